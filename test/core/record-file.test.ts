/** The record-file core shared by the image store and the map store, with a toy format. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFully } from '../../src/core/atomic-write.js';
import { badHeader, openRecordFile, readRecordHeader, RecordFlags } from '../../src/core/record-file.js';
import type { RecordFormat, RecordHeader } from '../../src/core/record-file.js';

interface ToyHeader extends RecordHeader {
  layout: { index: number; records: number };
}

const FORMAT: RecordFormat<ToyHeader> = {
  magic: Buffer.from('TOYREC\0\x01', 'latin1'),
  noun: 'toy file',
  expected: 'a toy file',
  remedy: 'make it again',
  truncatedHint: '',
  checksumAlways: true,
  checkVersion(h, path) {
    if (h.version !== 1) throw new Error(`${path}: toy version ${h.version}`);
  },
  hasChecksum: () => true,
  check(h, path) {
    if (h.ids.length !== h.count) throw badHeader(FORMAT, path, 'ids');
  },
};

const RECORD = 8;

class ToyWriter {
  readonly flags: RecordFlags;
  constructor(
    readonly fh: FileHandle,
    readonly header: ToyHeader,
    readonly path: string,
    written: Uint8Array,
  ) {
    this.flags = new RecordFlags(fh, path, header.layout.index, written, 2);
  }
  write(i: number, fill: number): Promise<void> {
    return this.flags.record(i, RECORD, () => writeFully(this.fh, Buffer.alloc(RECORD, fill), this.header.layout.records + i * RECORD, this.path), 'toy file');
  }
}

function header(ids: string[]): ToyHeader {
  return { version: 1, count: ids.length, ids, layout: { index: 256, records: 512 } };
}

const open_ = (path: string, ids: string[], options: { resume?: boolean; overwrite?: boolean } = {}) =>
  openRecordFile(path, header(ids), options, {
    format: FORMAT,
    end: (h) => h.layout.records + h.count * RECORD,
    same: (a, b) => JSON.stringify(a.ids) === JSON.stringify(b.ids),
    differs: (p) => `${p} holds other records`,
    resume: (fh, old, written) => new ToyWriter(fh, old, path, written),
    initialise: (fh, h) => writeFully(fh, Buffer.alloc(h.layout.records - h.layout.index), h.layout.index, path),
    fresh: (fh, h) => new ToyWriter(fh, h, path, new Uint8Array(h.count)),
  });

describe('record files', () => {
  it('writes the preamble, sets index bytes only at flushes, and resumes a partial file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pn-record-'));
    const path = join(dir, 'a.toy');
    const w = await open_(path, ['a', 'b', 'c']);
    await w.write(0, 7);
    // One record waits for its group (2): its index byte is not set yet.
    expect(readFileSync(path)[256]).toBe(0);
    expect(w.flags.pending()).toEqual([1, 2]);
    await w.write(2, 9);
    expect([...readFileSync(path).subarray(256, 259)]).toEqual([1, 0, 1]);
    await w.flags.close();
    const again = await open_(path, ['a', 'b', 'c']);
    expect([...again.flags.written]).toEqual([1, 0, 1]);
    expect(again.flags.pending()).toEqual([1]);
    await again.write(1, 8);
    await again.flags.close();
    const fh = await open(path, 'r');
    const h = await readRecordHeader(fh, path, FORMAT);
    await fh.close();
    expect(h.ids).toEqual(['a', 'b', 'c']);
    expect([...readFileSync(path).subarray(512, 512 + 3 * RECORD)]).toEqual([...Buffer.alloc(8, 7), ...Buffer.alloc(8, 8), ...Buffer.alloc(8, 9)]);
  });

  it('refuses other records, damage and truncation by name unless overwriting', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pn-record-'));
    const path = join(dir, 'b.toy');
    await (await open_(path, ['a'])).flags.close();
    await expect(open_(path, ['z'])).rejects.toThrow(`${path} holds other records`);
    await expect(open_(path, ['z'], { resume: false })).rejects.toThrow(/already exists/);
    const bytes = readFileSync(path);
    bytes[20] ^= 0xff; // inside the JSON header
    writeFileSync(path, bytes);
    await expect(open_(path, ['a'])).rejects.toThrow(/the toy file header is damaged \(checksum 0x[0-9a-f]{8} where the file records 0x[0-9a-f]{8}\); make it again: remove it/);
    writeFileSync(path, Buffer.from('not a toy at all, longer than 16'));
    await expect(open_(path, ['a'])).rejects.toThrow(/not a pneumo-native toy file \(bad magic; expected a toy file\)/);
    writeFileSync(path, Buffer.from('short'));
    await expect(open_(path, ['a'])).rejects.toThrow(/shorter than its 16-byte preamble/);
    // Overwriting replaces whatever is there.
    const w = await open_(path, ['q'], { overwrite: true });
    await w.flags.close();
    const fh = await open(path, 'r');
    expect((await readRecordHeader(fh, path, FORMAT)).ids).toEqual(['q']);
    await fh.close();
    // A truncated file of the same records.
    writeFileSync(path, readFileSync(path).subarray(0, 300));
    await expect(open_(path, ['q'])).rejects.toThrow(/the toy file is truncated \(300 bytes, its header needs 520\)/);
  });

  it('accepts nothing after a failed write', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pn-record-'));
    const path = join(dir, 'c.toy');
    const w = await open_(path, ['a', 'b']);
    await expect(w.flags.record(0, 8, () => Promise.reject(new Error('disk on fire')), 'toy file')).rejects.toThrow('disk on fire');
    await expect(w.write(1, 1)).rejects.toThrow(/an earlier write failed; reopen the toy file to resume/);
    await w.flags.close();
    expect([...readFileSync(path).subarray(256, 258)]).toEqual([0, 0]);
  });
});
