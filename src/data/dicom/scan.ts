/**
 * A structural walk over a little-endian data set that checks every element's length against
 * the file size and locates the Pixel Data element, with its fragments when encapsulated.
 *
 * It runs before dcmjs parses anything, for two reasons: dcmjs zero-fills values that run past
 * the end of a truncated file (silently returning wrong pixels) and allocates whatever length a
 * corrupt header claims (up to 4 GiB). After this walk, dcmjs only sees the bytes before Pixel
 * Data, all of them known to be well-formed in length; the pixels come straight from here.
 */
import { tagString } from './elements.js';

/** Where a fragment (or native value) lies in the file. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** The Pixel Data element as found in the file. */
export type PixelDataLocation =
  | {
      encapsulated: false;
      /** Offset of the element's tag (where the header bytes end). */
      elementOffset: number;
      /** The value, clamped to the end of the file. */
      value: ByteRange;
      /** The length the element declares (may exceed `value.length` in a truncated file). */
      declaredLength: number;
    }
  | {
      encapsulated: true;
      elementOffset: number;
      /** Basic Offset Table entries (empty when the table is empty). */
      offsetTable: number[];
      /** Fragment values in order, with their item offsets relative to the first fragment item. */
      fragments: (ByteRange & { itemOffset: number })[];
    };

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEFINED = 0xffffffff;
const ITEM = 0xfffee000;
const ITEM_END = 0xfffee00d;
const SEQUENCE_END = 0xfffee0dd;
const PIXEL_DATA = 0x7fe00010;
const MAX_DEPTH = 32;

class Walker {
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(pos: number, count: number, what: string): void {
    if (pos + count > this.bytes.length) {
      throw new Error(`the file is truncated: ${what} at byte ${pos} needs ${count} bytes but only ${Math.max(0, this.bytes.length - pos)} remain`);
    }
  }

  private tag(pos: number): number {
    return ((this.view.getUint16(pos, true) << 16) | this.view.getUint16(pos + 2, true)) >>> 0;
  }

  /** Reads an element header: returns the tag, VR (explicit only), header size and length. */
  private header(pos: number, explicit: boolean): { tag: number; vr: string; size: number; length: number } {
    this.need(pos, 8, 'an element header');
    const tag = this.tag(pos);
    if (tag >>> 16 === 0xfffe || !explicit) return { tag, vr: '', size: 8, length: this.view.getUint32(pos + 4, true) };
    const vr = String.fromCharCode(this.bytes[pos + 4]!, this.bytes[pos + 5]!);
    if (!/^[A-Z]{2}$/.test(vr)) throw new Error(`the data set is malformed: element ${tagString(tag)} at byte ${pos} has no valid VR`);
    if (LONG_VRS.has(vr)) {
      this.need(pos, 12, `the header of element ${tagString(tag)}`);
      return { tag, vr, size: 12, length: this.view.getUint32(pos + 8, true) };
    }
    return { tag, vr, size: 8, length: this.view.getUint16(pos + 6, true) };
  }

  /** Walks the top-level data set from `pos`; returns Pixel Data's location, if any. */
  topLevel(pos: number, explicit: boolean): PixelDataLocation | undefined {
    while (pos < this.bytes.length) {
      const h = this.header(pos, explicit);
      if (h.tag === PIXEL_DATA) return this.pixelData(pos, h);
      pos = this.skipValue(pos, h, explicit, 0);
    }
    return undefined;
  }

  /** Skips an element's value, recursing into undefined-length sequences; returns the next offset. */
  private skipValue(pos: number, h: { tag: number; vr: string; size: number; length: number }, explicit: boolean, depth: number): number {
    const start = pos + h.size;
    if (h.length !== UNDEFINED) {
      this.need(start, h.length, `the value of element ${tagString(h.tag)} (${h.length} bytes)`);
      return start + h.length;
    }
    // An undefined-length UN holds implicit VR little endian content (PS3.5 6.2.2).
    return this.skipSequence(start, h.vr === 'UN' ? false : explicit, depth + 1, h.tag);
  }

  private skipSequence(pos: number, explicit: boolean, depth: number, owner: number): number {
    if (depth > MAX_DEPTH) throw new Error(`the data set is malformed: sequences nested deeper than ${MAX_DEPTH} levels`);
    for (;;) {
      this.need(pos, 8, `an item of sequence ${tagString(owner)}`);
      const tag = this.tag(pos);
      const length = this.view.getUint32(pos + 4, true);
      if (tag === SEQUENCE_END) return pos + 8;
      if (tag !== ITEM) throw new Error(`the data set is malformed: expected an item in sequence ${tagString(owner)} at byte ${pos}, found ${tagString(tag)}`);
      pos += 8;
      if (length !== UNDEFINED) {
        this.need(pos, length, `an item of sequence ${tagString(owner)} (${length} bytes)`);
        pos += length;
        continue;
      }
      for (;;) {
        const h = this.header(pos, explicit);
        if (h.tag === ITEM_END) {
          pos += 8;
          break;
        }
        pos = this.skipValue(pos, h, explicit, depth);
      }
    }
  }

  private pixelData(pos: number, h: { tag: number; size: number; length: number }): PixelDataLocation {
    const start = pos + h.size;
    if (h.length !== UNDEFINED) {
      return { encapsulated: false, elementOffset: pos, value: { offset: start, length: Math.max(0, Math.min(h.length, this.bytes.length - start)) }, declaredLength: h.length };
    }
    let at = start;
    this.need(at, 8, 'the Basic Offset Table item of the encapsulated Pixel Data');
    if (this.tag(at) !== ITEM) throw new Error(`the encapsulated Pixel Data does not start with a Basic Offset Table item (found ${tagString(this.tag(at))})`);
    const tableLength = this.view.getUint32(at + 4, true);
    this.need(at + 8, tableLength, 'the Basic Offset Table');
    if (tableLength % 4 !== 0) throw new Error(`the Basic Offset Table has ${tableLength} bytes, not a multiple of 4`);
    const offsetTable: number[] = [];
    for (let i = 0; i < tableLength; i += 4) offsetTable.push(this.view.getUint32(at + 8 + i, true));
    at += 8 + tableLength;
    const firstItem = at;
    const fragments: (ByteRange & { itemOffset: number })[] = [];
    for (;;) {
      if (at + 8 > this.bytes.length) {
        throw new Error(`the encapsulated Pixel Data is truncated: the file ends after ${fragments.length} fragment(s), before the sequence delimiter`);
      }
      const tag = this.tag(at);
      const length = this.view.getUint32(at + 4, true);
      if (tag === SEQUENCE_END) break;
      if (tag !== ITEM) throw new Error(`the encapsulated Pixel Data is malformed: expected a fragment item at byte ${at}, found ${tagString(tag)}`);
      if (at + 8 + length > this.bytes.length) {
        throw new Error(`the encapsulated Pixel Data is truncated: fragment ${fragments.length} declares ${length} bytes but only ${this.bytes.length - at - 8} remain`);
      }
      fragments.push({ offset: at + 8, length, itemOffset: at - firstItem });
      at += 8 + length;
    }
    return { encapsulated: true, elementOffset: pos, offsetTable, fragments };
  }
}

/**
 * Walks a little-endian data set starting at `offset`.
 * @param explicit explicit VR (true) or implicit VR (false)
 * @returns the Pixel Data location, or undefined when the data set has none
 * @throws Error whose message is the reason (truncated element, malformed sequence or fragments)
 */
export function scanDataSet(bytes: Uint8Array, offset: number, explicit: boolean): PixelDataLocation | undefined {
  return new Walker(bytes).topLevel(offset, explicit);
}
