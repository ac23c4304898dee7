/**
 * CRC-32 (the zip/PNG polynomial, as Python's `zlib.crc32`): Node's native `zlib.crc32` where the
 * running Node has it (20.15+), else a table-driven fallback with the same results.
 */
import * as zlib from 'node:zlib';

type Crc32 = (data: Uint8Array, value?: number) => number;

let table: Uint32Array | undefined;

function crc32Fallback(data: Uint8Array, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = (value ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const native = (zlib as unknown as { crc32?: Crc32 }).crc32;

/** The CRC-32 of `data`, continuing from `value` (the CRC of the bytes before it; default 0). */
export function crc32(data: Uint8Array, value = 0): number {
  return native ? native(data, value) >>> 0 : crc32Fallback(data, value);
}

/** @internal The table-driven implementation (tests compare it with the native one). */
export const crc32Portable: Crc32 = crc32Fallback;
