/**
 * DICOM transfer syntaxes by UID: their standard names (PS3.6 Annex A) and whether this
 * reader decodes them. Names go into error messages, so a user sees "JPEG 2000 Image
 * Compression (1.2.840.10008.1.2.4.91)" rather than a bare UID.
 */

/** A transfer syntax as reported by the reader: its UID and standard name. */
export interface TransferSyntax {
  /** The Transfer Syntax UID from the file meta information (0002,0010). */
  uid: string;
  /** The standard name, or "unknown transfer syntax" for a UID not in the table. */
  name: string;
}

/** How the reader handles a transfer syntax's pixel data. */
export type PixelEncoding = 'implicit-le' | 'explicit-le' | 'jpeg-baseline';

/** Implicit VR Little Endian, the DICOM default. */
export const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
/** Explicit VR Little Endian. */
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
/** JPEG Baseline (Process 1): the SIIM-ACR encoding. */
export const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';

const NAMES: Readonly<Record<string, string>> = {
  '1.2.840.10008.1.2': 'Implicit VR Little Endian',
  '1.2.840.10008.1.2.1': 'Explicit VR Little Endian',
  '1.2.840.10008.1.2.1.98': 'Encapsulated Uncompressed Explicit VR Little Endian',
  '1.2.840.10008.1.2.1.99': 'Deflated Explicit VR Little Endian',
  '1.2.840.10008.1.2.2': 'Explicit VR Big Endian',
  '1.2.840.10008.1.2.4.50': 'JPEG Baseline (Process 1)',
  '1.2.840.10008.1.2.4.51': 'JPEG Extended (Process 2 & 4), 12-bit',
  '1.2.840.10008.1.2.4.57': 'JPEG Lossless, Non-Hierarchical (Process 14)',
  '1.2.840.10008.1.2.4.70': 'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless Image Compression',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS Lossy (Near-Lossless) Image Compression',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000 Image Compression',
  '1.2.840.10008.1.2.4.92': 'JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.93': 'JPEG 2000 Part 2 Multi-component Image Compression',
  '1.2.840.10008.1.2.4.100': 'MPEG2 Main Profile / Main Level',
  '1.2.840.10008.1.2.4.102': 'MPEG-4 AVC/H.264 High Profile / Level 4.1',
  '1.2.840.10008.1.2.4.110': 'JPEG XL Lossless',
  '1.2.840.10008.1.2.4.112': 'JPEG XL',
  '1.2.840.10008.1.2.4.201': 'High-Throughput JPEG 2000 Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.203': 'High-Throughput JPEG 2000 Image Compression',
  '1.2.840.10008.1.2.5': 'RLE Lossless',
};

const SUPPORTED: Readonly<Record<string, PixelEncoding>> = {
  [IMPLICIT_VR_LITTLE_ENDIAN]: 'implicit-le',
  [EXPLICIT_VR_LITTLE_ENDIAN]: 'explicit-le',
  [JPEG_BASELINE]: 'jpeg-baseline',
};

/** The UID with its standard name. */
export function describeTransferSyntax(uid: string): TransferSyntax {
  return { uid, name: NAMES[uid] ?? 'unknown transfer syntax' };
}

/** How pixel data in this syntax is decoded, or undefined when the reader does not support it. */
export function pixelEncodingOf(uid: string): PixelEncoding | undefined {
  return SUPPORTED[uid];
}

/** The UIDs the reader decodes, for error messages. */
export function supportedTransferSyntaxes(): TransferSyntax[] {
  return Object.keys(SUPPORTED).map(describeTransferSyntax);
}
