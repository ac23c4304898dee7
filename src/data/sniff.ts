/**
 * Image containers recognised by their first bytes, whatever the file's name: DICOM Part 10
 * ("DICM" after the 128-byte preamble), PNG and JPEG.
 */

/** A container format {@link sniffImageFormat} recognises. */
export type ImageFormat = 'dicom' | 'png' | 'jpeg';

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** True when `bytes` starts like a DICOM Part 10 file ("DICM" at byte 128). */
export function hasDicmPrefix(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

/** The container format of `bytes` from its magic bytes, or undefined. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (hasDicmPrefix(bytes)) return 'dicom';
  if (bytes.length >= 8 && PNG_MAGIC.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}
