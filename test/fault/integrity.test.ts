/**
 * Fault injection, damaged files on disk: checkpoints whose zip entries fail their CRC-32 (the
 * issue's repro: weights overwritten with NaN), truncated or with a damaged header, and map files
 * with a damaged map or header. Every load is refused with the file named; nothing loads silently.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MapReader, MapWriter } from '../../src/inference/maps.js';
import { Model } from '../../src/models/model.js';
import { Segmenter } from '../../src/serve/segmenter.js';
import { runCli } from '../helpers/cli.js';

/** The stored entries of a zip archive from its central directory: name, data offset and size. */
function zipEntries(zip: Buffer): { name: string; start: number; size: number }[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  let entries = zip.readUInt16LE(eocd + 10);
  let cd = zip.readUInt32LE(eocd + 16);
  if (cd === 0xffffffff || entries === 0xffff) {
    const z64 = Number(zip.readBigUInt64LE(eocd - 20 + 8));
    entries = Number(zip.readBigUInt64LE(z64 + 32));
    cd = Number(zip.readBigUInt64LE(z64 + 48));
  }
  const out: { name: string; start: number; size: number }[] = [];
  for (let k = 0, pos = cd; k < entries; k++) {
    const nameLen = zip.readUInt16LE(pos + 28);
    const extraLen = zip.readUInt16LE(pos + 30);
    const commentLen = zip.readUInt16LE(pos + 32);
    let size = zip.readUInt32LE(pos + 20);
    let local = zip.readUInt32LE(pos + 42);
    const name = zip.toString('utf8', pos + 46, pos + 46 + nameLen);
    for (let x = pos + 46 + nameLen; x + 4 <= pos + 46 + nameLen + extraLen; ) {
      const id = zip.readUInt16LE(x);
      const len = zip.readUInt16LE(x + 2);
      if (id === 1) {
        let at = x + 4;
        if (zip.readUInt32LE(pos + 24) === 0xffffffff) at += 8;
        if (size === 0xffffffff) (size = Number(zip.readBigUInt64LE(at))), (at += 8);
        if (local === 0xffffffff) local = Number(zip.readBigUInt64LE(at));
      }
      x += 4 + len;
    }
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    out.push({ name, start, size });
    pos += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

let dir: string;
let good: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pn-integrity-'));
  const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 3 });
  good = join(dir, 'good.ckpt');
  await model.save(good, { metadata: { imgSize: 64 } });
  model.dispose();
}, 120_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('checkpoint integrity', () => {
  it('writes correct zip CRCs (Python zipfile agrees)', () => {
    if (spawnSync('python3', ['--version']).status !== 0) return;
    const bad = execFileSync('python3', ['-c', 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).testzip())', good], { encoding: 'utf8' }).trim();
    expect(bad).toBe('None');
  });

  it('refuses a checkpoint whose conv1 weights were overwritten with NaN (CRC mismatch), naming the file and the entry', async () => {
    const bytes = readFileSync(good);
    // The first convolution's weight is the first large float entry; any stored tensor will do.
    const entry = zipEntries(bytes).find((e) => /\/data\/\d+$/.test(e.name) && e.size >= 4096)!;
    const bad = Buffer.from(bytes);
    for (let i = 0; i < 1024; i += 4) bad.writeFloatLE(NaN, entry.start + i);
    const path = join(dir, 'nan.ckpt');
    writeFileSync(path, bad);
    if (spawnSync('python3', ['--version']).status === 0) {
      expect(execFileSync('python3', ['-c', 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).testzip())', path], { encoding: 'utf8' }).trim()).toBe(entry.name);
    }
    const message = new RegExp(`${path}: the file is damaged \\(zip entry ${entry.name} fails its CRC-32 check`);
    await expect(Model.load(path)).rejects.toThrow(message);
    await expect(Segmenter.load(path)).rejects.toThrow(message);
    const images = join(dir, 'images');
    execFileSync('mkdir', ['-p', images]);
    const { writeDicom } = await import('../../src/data/dicom.js');
    writeFileSync(join(images, 'a.dcm'), await writeDicom({ pixels: new Uint8Array(64 * 64).fill(90), width: 64, height: 64 }, { encoding: 'jpeg-baseline' }));
    const r = await runCli(['infer', '--model', path, '--images', images, '--out', join(dir, 'nan.pnm'), '--quiet']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
  }, 120_000);

  it('refuses truncated checkpoints and damaged headers, naming the file', async () => {
    const bytes = readFileSync(good);
    const truncated = join(dir, 'truncated.ckpt');
    writeFileSync(truncated, bytes.subarray(0, bytes.length >> 1));
    await expect(Model.load(truncated)).rejects.toThrow(new RegExp(`${truncated}: the file is damaged \\(no zip end-of-directory record`));
    const header = join(dir, 'header.ckpt');
    const h = Buffer.from(bytes);
    h.write('XXXX', 0);
    writeFileSync(header, h);
    await expect(Model.load(header)).rejects.toThrow(new RegExp(header.replace(/[.]/g, '\\.')));
    const directory = join(dir, 'directory.ckpt');
    const d = Buffer.from(bytes);
    const eocd = d.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    d.writeUInt32LE(0x7fffffff, eocd + 16); // the central directory's offset
    writeFileSync(directory, d);
    await expect(Model.load(directory)).rejects.toThrow(new RegExp(`${directory}: the file is damaged`));
    (await Model.load(good)).dispose();
  });
});

describe('map file integrity', () => {
  const ids = ['a', 'b', 'c'];
  const h = 8;
  const w = 8;

  async function writeMaps(path: string): Promise<number> {
    const writer = await MapWriter.create(path, { ids, height: h, width: w });
    for (let i = 0; i < ids.length; i++) await writer.write(i, new Float32Array(h * w).fill((i + 1) / 4), i === 1 ? 0.5 : null);
    await writer.close();
    return writer.header.layout.maps;
  }

  it('refuses a map whose bytes changed (naming the file and the image) and reads the others', async () => {
    const path = join(dir, 'flip.pnm');
    const maps = await writeMaps(path);
    const bytes = readFileSync(path);
    bytes[maps + h * w + 5] ^= 0x10; // map 1 (b)
    writeFileSync(path, bytes);
    const r = await MapReader.open(path);
    try {
      expect((await r.read(0))[0]).toBeCloseTo(64 / 255, 5);
      await expect(r.read('b')).rejects.toThrow(new RegExp(`${path}: map 1 \\(b\\) is damaged: checksum`));
      await expect(r.readForSearch(0, 3)).rejects.toThrow(/map 1 \(b\) is damaged/);
    } finally {
      await r.close();
    }
  });

  it('refuses a changed label (checksummed with its map)', async () => {
    const path = join(dir, 'label.pnm');
    await writeMaps(path);
    const r0 = await MapReader.open(path);
    const labels = r0.header.layout.labels;
    await r0.close();
    const bytes = readFileSync(path);
    bytes.writeFloatLE(0.9, labels + 4);
    writeFileSync(path, bytes);
    const r = await MapReader.open(path);
    try {
      await expect(r.read(1)).rejects.toThrow(/map 1 \(b\) is damaged/);
    } finally {
      await r.close();
    }
  });

  it('refuses a damaged header with a message naming the file, whatever the damage', async () => {
    const path = join(dir, 'header.pnm');
    await writeMaps(path);
    const original = readFileSync(path);
    const text = original.toString('latin1');
    const cases: [string, Buffer][] = [];
    // One byte of the JSON changed: the header checksum.
    const json = Buffer.from(original);
    json[text.indexOf('"count"') + 2] ^= 0x01;
    cases.push(['checksum', json]);
    // A bad length in the preamble.
    const length = Buffer.from(original);
    length.writeUInt32LE(0x7ffffff0, 8);
    cases.push(['length', length]);
    // A self-consistent checksum over inconsistent fields: the field checks.
    const { crc32 } = await import('../../src/core/checksum.js');
    const fields = Buffer.from(original);
    const headerLength = fields.readUInt32LE(8);
    const edited = fields.toString('utf8', 16, 16 + headerLength).replace('"count":3', '"count":9');
    fields.write(edited, 16, 'utf8');
    fields.writeUInt32LE(crc32(fields.subarray(16, 16 + headerLength)), 12);
    cases.push(['fields', fields]);
    for (const [what, bytes] of cases) {
      writeFileSync(path, bytes);
      await expect(MapReader.open(path), what).rejects.toThrow(new RegExp(`^${path}: the map file header is damaged`));
      await expect(MapWriter.create(path, { ids, height: h, width: w }), what).rejects.toThrow(new RegExp(`${path}: the map file header is damaged .*pass --overwrite`));
    }
  });
});
