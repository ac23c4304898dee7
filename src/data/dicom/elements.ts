/**
 * Encoding of DICOM data elements (PS3.5 section 7) for the writer: tag, VR, length and an
 * even-length value, in explicit or implicit VR little endian, plus encapsulated pixel data
 * (PS3.5 A.4). Kept separate from the writer so tests can build deliberately broken files.
 */

/** Value representations the writer emits. */
export type Vr = 'AE' | 'AS' | 'CS' | 'DA' | 'DS' | 'IS' | 'LO' | 'OB' | 'OW' | 'PN' | 'SH' | 'TM' | 'UI' | 'UL' | 'US';

/** One data element ready to encode: `value` is a string (text VRs), numbers (UL/US) or bytes. */
export interface DataElement {
  /** The tag as (group << 16) | element, e.g. 0x00280010 for Rows. */
  tag: number;
  vr: Vr;
  value: string | number[] | Uint8Array;
}

/** VRs whose explicit encoding has 2 reserved bytes and a 32-bit length (PS3.5 7.1.2). */
const LONG_VRS = new Set<Vr>(['OB', 'OW']);

/** Pads a value to even length: UI with NUL, other text with a space, bytes with NUL (PS3.5 6.2). */
function valueBytes(element: DataElement): Uint8Array {
  const { vr, value } = element;
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'latin1');
    if (bytes.length % 2 === 0) return bytes;
    return Buffer.concat([bytes, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
  }
  if (Array.isArray(value)) {
    const size = vr === 'UL' ? 4 : 2;
    const out = Buffer.alloc(value.length * size);
    value.forEach((v, i) => (size === 4 ? out.writeUInt32LE(v, i * 4) : out.writeUInt16LE(v, i * 2)));
    return out;
  }
  if (value.length % 2 === 0) return value;
  const padded = new Uint8Array(value.length + 1);
  padded.set(value);
  return padded;
}

/** Encodes one element in explicit (`explicit` true) or implicit VR little endian. */
export function encodeElement(element: DataElement, explicit: boolean): Buffer {
  const value = valueBytes(element);
  const longHeader = !explicit || LONG_VRS.has(element.vr);
  const headerSize = explicit ? (longHeader ? 12 : 8) : 8;
  const out = Buffer.alloc(headerSize + value.length);
  out.writeUInt16LE(element.tag >>> 16, 0);
  out.writeUInt16LE(element.tag & 0xffff, 2);
  if (!explicit) {
    out.writeUInt32LE(value.length, 4);
  } else {
    out.write(element.vr, 4, 'latin1');
    if (longHeader) out.writeUInt32LE(value.length, 8);
    else {
      if (value.length > 0xffff) throw new Error(`value of tag ${tagString(element.tag)} is too long for VR ${element.vr}`);
      out.writeUInt16LE(value.length, 6);
    }
  }
  out.set(value, headerSize);
  return out;
}

/** Formats a tag as `(gggg,eeee)` for messages. */
export function tagString(tag: number): string {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');
  return `(${hex(tag >>> 16)},${hex(tag & 0xffff)})`;
}

function item(tag: number, payload: Uint8Array): Buffer {
  const out = Buffer.alloc(8 + payload.length);
  out.writeUInt16LE(0xfffe, 0);
  out.writeUInt16LE(tag, 2);
  out.writeUInt32LE(payload.length, 4);
  out.set(payload, 8);
  return out;
}

/**
 * Encodes encapsulated pixel data (7FE0,0010) OB of undefined length: a Basic Offset Table
 * item (with one offset per frame when `offsetTable` is true, else empty), then each frame's
 * fragments, then the sequence delimiter. Every fragment has even length (the last one of a
 * frame is NUL-padded).
 */
export function encodeEncapsulatedPixelData(frames: Uint8Array[][], offsetTable: boolean): Buffer {
  const fragmentItems = frames.map((fragments) => fragments.map((f) => item(0xe000, valueBytes({ tag: 0, vr: 'OB', value: f }))));
  const offsets = Buffer.alloc(offsetTable ? 4 * frames.length : 0);
  if (offsetTable) {
    let offset = 0;
    fragmentItems.forEach((items, i) => {
      offsets.writeUInt32LE(offset, 4 * i);
      for (const it of items) offset += it.length;
    });
  }
  const header = Buffer.alloc(12);
  header.writeUInt16LE(0x7fe0, 0);
  header.writeUInt16LE(0x0010, 2);
  header.write('OB', 4, 'latin1');
  header.writeUInt32LE(0xffffffff, 8);
  const delimiter = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
  return Buffer.concat([header, item(0xe000, offsets), ...fragmentItems.flat(), delimiter]);
}
