/**
 * Just enough of the JPEG marker syntax to check a frame before decoding it: which process
 * (SOF marker) encoded it, its precision, size and component count. Lets the reader turn
 * "12-bit JPEG mislabelled as baseline" into a clear error, and lets tests verify that the
 * writer really produces Baseline (SOF0) 8-bit grayscale.
 */

/** The frame header of a JPEG stream. */
export interface JpegFrameInfo {
  /** The SOF marker's low byte: 0xc0 baseline, 0xc1 extended, 0xc2 progressive, 0xc3 lossless, ... */
  sof: number;
  /** Sample precision in bits (8 for baseline). */
  precision: number;
  width: number;
  height: number;
  /** Number of colour components (1 for grayscale). */
  components: number;
}

const SOF_NAMES: Readonly<Record<number, string>> = {
  0xc0: 'Baseline DCT (SOF0)',
  0xc1: 'Extended sequential DCT (SOF1)',
  0xc2: 'Progressive DCT (SOF2)',
  0xc3: 'Lossless (SOF3)',
  0xc5: 'Differential sequential DCT (SOF5)',
  0xc6: 'Differential progressive DCT (SOF6)',
  0xc7: 'Differential lossless (SOF7)',
  0xc9: 'Extended sequential DCT, arithmetic (SOF9)',
  0xca: 'Progressive DCT, arithmetic (SOF10)',
  0xcb: 'Lossless, arithmetic (SOF11)',
  0xf7: 'JPEG-LS (SOF55)',
};

/** A readable name for a SOF marker byte. */
export function sofName(sof: number): string {
  return SOF_NAMES[sof] ?? `SOF marker 0xff${sof.toString(16)}`;
}

/**
 * Reads the frame header of a JPEG stream, scanning markers from SOI up to the first SOF.
 * @throws Error with the reason when the bytes are not a JPEG stream or end before a SOF.
 */
export function readJpegFrameInfo(bytes: Uint8Array): JpegFrameInfo {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) {
    throw new Error('the frame does not start with a JPEG SOI marker (ff d8)');
  }
  let pos = 2;
  while (pos + 4 <= bytes.length) {
    if (bytes[pos] !== 0xff) throw new Error(`expected a JPEG marker at byte ${pos} of the frame`);
    const marker = bytes[pos + 1]!;
    if (marker === 0xff) {
      pos += 1; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2; // markers without a length
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) break; // EOI or SOS before any SOF
    const length = (bytes[pos + 2]! << 8) | bytes[pos + 3]!;
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof || marker === 0xf7) {
      if (pos + 10 > bytes.length) break;
      return {
        sof: marker,
        precision: bytes[pos + 4]!,
        height: (bytes[pos + 5]! << 8) | bytes[pos + 6]!,
        width: (bytes[pos + 7]! << 8) | bytes[pos + 8]!,
        components: bytes[pos + 9]!,
      };
    }
    pos += 2 + length;
  }
  throw new Error('the JPEG stream ends before its frame header (SOF marker)');
}

/** True when the stream ends with an EOI marker (ff d9), allowing zero padding after it. */
export function endsWithEoi(bytes: Uint8Array): boolean {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end -= 1;
  return end >= 2 && bytes[end - 2] === 0xff && bytes[end - 1] === 0xd9;
}
