/**
 * The data set of a DICOM file, parsed by dcmjs, with typed accessors by tag. dcmjs logs every
 * non-conformance it meets (e.g. SIIM's 2-character PatientAge) to the console; the reader is
 * lenient on purpose, so those loggers are silenced once here.
 */
import dcmjs, { type DcmjsElement } from 'dcmjs';

let quieted = false;
function quietDcmjs(): void {
  if (quieted) return;
  quieted = true;
  dcmjs.log.setLevel('silent');
  dcmjs.log.getLogger('validation.dcmjs').setLevel('silent');
}

/** A parsed data set: tag (8 upper-case hex digits, e.g. "00280010") to element. */
export class DataSet {
  constructor(private readonly elements: Record<string, DcmjsElement>) {}

  /**
   * Parses a Part 10 file: all of `bytes`, or up to Pixel Data when `stopAtPixelData` is set.
   * @throws whatever dcmjs throws for a malformed file; callers wrap it with the file name
   */
  static parse(bytes: Uint8Array, stopAtPixelData: boolean): DataSet {
    quietDcmjs();
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    const parsed = dcmjs.data.DicomMessage.readFile(buffer, {
      ignoreErrors: false,
      untilTag: stopAtPixelData ? '7FE00010' : null,
      includeUntilTagValue: false,
    });
    return new DataSet(parsed.dict);
  }

  private values(tag: string): unknown[] {
    const value = this.elements[tag]?.Value;
    return Array.isArray(value) ? value : [];
  }

  /** True when the element is present (even if empty). */
  has(tag: string): boolean {
    return tag in this.elements;
  }

  /** The first value as trimmed text, or undefined when absent or empty. */
  string(tag: string): string | undefined {
    const first = this.values(tag)[0];
    if (first === undefined || first === null) return undefined;
    const text = typeof first === 'object' && 'Alphabetic' in first ? String((first as { Alphabetic: unknown }).Alphabetic ?? '') : String(first);
    const trimmed = text.replace(/[\0 ]+$/, '').trim();
    return trimmed === '' ? undefined : trimmed;
  }

  /** All values as finite numbers (text values such as DS/IS are parsed leniently). */
  numbers(tag: string): number[] {
    const out: number[] = [];
    for (const v of this.values(tag)) {
      const n = typeof v === 'number' ? v : typeof v === 'string' ? Number.parseFloat(v) : Number.NaN;
      if (Number.isFinite(n)) out.push(n);
    }
    return out;
  }

  /** The first value as a finite number, or undefined. */
  number(tag: string): number | undefined {
    return this.numbers(tag)[0];
  }
}
