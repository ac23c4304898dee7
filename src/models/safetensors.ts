/**
 * safetensors: an 8-byte little-endian header length, a JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }`, then the raw
 * little-endian bytes. The header is parsed here; the native side reads the tensor bytes.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { writeFileAtomic } from '../core/atomic-write.js';
import type { NativeSafetensorsEntry } from '../native/binding.js';
import type { Tensor } from '../core/tensor.js';

const DTYPES = ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'] as const;
const MAX_HEADER = 100 * 1024 * 1024;

export interface SafetensorsHeader {
  /** Byte offset of the data buffer in the file (8 + header length). */
  dataOffset: number;
  entries: NativeSafetensorsEntry[];
  metadata: Record<string, string>;
}

/** Reads and validates the header of a safetensors file; errors name the file and the entry. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openSync(path, 'r');
  try {
    const lengthBytes = Buffer.alloc(8);
    if (readSync(fd, lengthBytes, 0, 8, 0) !== 8) throw new Error(`${path} is not a safetensors file: shorter than 8 bytes`);
    const length = lengthBytes.readBigUInt64LE(0);
    if (length > BigInt(MAX_HEADER)) throw new Error(`${path} is not a safetensors file: header length ${length} is implausible`);
    const headerBytes = Buffer.alloc(Number(length));
    if (readSync(fd, headerBytes, 0, headerBytes.length, 8) !== headerBytes.length) throw new Error(`${path} ends inside its safetensors header`);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBytes.toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`${path} has a safetensors header that is not JSON: ${(err as Error).message}`);
    }
    const entries: NativeSafetensorsEntry[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, value] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = value as Record<string, string>;
        continue;
      }
      const e = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (!(DTYPES as readonly unknown[]).includes(e.dtype)) throw new Error(`${path}: tensor ${name} has unsupported dtype ${JSON.stringify(e.dtype)}`);
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new Error(`${path}: tensor ${name} has an invalid shape`);
      const offsets = e.data_offsets;
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[1] < offsets[0]) {
        throw new Error(`${path}: tensor ${name} has invalid data_offsets`);
      }
      entries.push({ name, dtype: e.dtype as string, shape: e.shape as number[], begin: offsets[0] as number, end: offsets[1] as number });
    }
    return { dataOffset: 8 + Number(length), entries, metadata };
  } finally {
    closeSync(fd);
  }
}

const FROM_DTYPE: Record<string, { code: string; read: 'float32' | 'float64' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' }> = {
  float32: { code: 'F32', read: 'float32' },
  float16: { code: 'F32', read: 'float32' },
  bfloat16: { code: 'F32', read: 'float32' },
  float64: { code: 'F64', read: 'float64' },
  int64: { code: 'I64', read: 'int64' },
  int32: { code: 'I32', read: 'int32' },
  int16: { code: 'I16', read: 'int16' },
  int8: { code: 'I8', read: 'int8' },
  uint8: { code: 'U8', read: 'uint8' },
  bool: { code: 'BOOL', read: 'uint8' },
};

/** Writes named tensors as a safetensors file (half types widened to F32), atomically. */
export async function writeSafetensors(path: string, tensors: Iterable<[string, Tensor]>, metadata: Record<string, string> = {}): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of tensors) {
    const kind = FROM_DTYPE[tensor.dtype];
    if (!kind) throw new TypeError(`Expected a tensor of a safetensors dtype for ${name} but received ${tensor.dtype}`);
    const data = await tensor.data(kind.read);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    header[name] = { dtype: kind.code, shape: tensor.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad the header with spaces to 8 bytes so the data buffer is aligned.
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  await writeFileAtomic(path, [length, json, ...chunks]);
}
