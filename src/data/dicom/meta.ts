/**
 * The Part 10 envelope checked before anything else: the 128-byte preamble, the "DICM" prefix
 * and the file meta group (0002,xxxx) in explicit VR little endian, from which the transfer
 * syntax comes. Parsed by hand so that a file with a missing or broken envelope gets a precise
 * reason instead of a parser's stack trace.
 */
import { hasDicmPrefix } from '../sniff.js';

/** What the file meta information says. */
export interface FileMeta {
  /** Transfer Syntax UID (0002,0010), trailing NUL/space removed. */
  transferSyntaxUid: string;
  /** Byte offset where the data set starts. */
  dataSetOffset: number;
}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

/**
 * Reads the file meta information.
 * @throws Error whose message is the reason (empty file, no DICM prefix, truncated meta group,
 *   no transfer syntax)
 */
export function readFileMeta(bytes: Uint8Array): FileMeta {
  if (bytes.length === 0) throw new Error('the file is empty');
  if (!hasDicmPrefix(bytes)) {
    throw new Error(
      bytes.length < 132
        ? `not a DICOM Part 10 file: only ${bytes.length} bytes, too short for the 128-byte preamble and the "DICM" prefix`
        : 'not a DICOM Part 10 file: no "DICM" prefix at byte 128 (missing preamble / file meta information)',
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 132;
  let transferSyntaxUid: string | undefined;
  while (pos + 8 <= bytes.length && view.getUint16(pos, true) === 0x0002) {
    const element = view.getUint16(pos + 2, true);
    const vr = String.fromCharCode(bytes[pos + 4]!, bytes[pos + 5]!);
    let length: number;
    let header: number;
    if (LONG_VRS.has(vr)) {
      if (pos + 12 > bytes.length) break;
      length = view.getUint32(pos + 8, true);
      header = 12;
    } else {
      length = view.getUint16(pos + 6, true);
      header = 8;
    }
    if (pos + header + length > bytes.length) {
      throw new Error(`the file meta information is truncated: element (0002,${element.toString(16).padStart(4, '0')}) runs past the end of the file`);
    }
    if (element === 0x0010) {
      transferSyntaxUid = Buffer.from(bytes.buffer, bytes.byteOffset + pos + header, length).toString('latin1').replace(/[\0 ]+$/, '');
    }
    pos += header + length;
  }
  if (transferSyntaxUid === undefined) {
    throw new Error(
      pos === 132
        ? 'the file meta information (group 0002) is missing after the "DICM" prefix'
        : 'the file meta information has no Transfer Syntax UID (0002,0010)',
    );
  }
  if (pos >= bytes.length) throw new Error('the file ends after its file meta information: no data set');
  return { transferSyntaxUid, dataSetOffset: pos };
}
