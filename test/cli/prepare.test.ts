/** `pneumo-native prepare` end to end on a few small DICOMs (compiled CLI in dist/). */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { read } from '../../src/data/dicom.js';
import { writeDicom } from '../../src/data/dicom-write.js';
import { decodeUnion, encode } from '../../src/data/rle.js';
import type { PrepareReport } from '../../src/data/prepare.js';
import { tempDir, testImage } from '../data/dicom-fixtures.js';
import { parseJson, runCli } from '../helpers/cli.js';

const S = 96;
const tmp = tempDir('prepare');
const root = tmp.dir;
const trainDir = join(root, 'dicom-images-train');
const testDir = join(root, 'dicom-images-test');
const labels = join(root, 'train-rle.csv');
afterAll(() => tmp.cleanup());

/** A rectangle mask (rows r0..r1-1, cols c0..c1-1) at S x S. */
function rect(r0: number, r1: number, c0: number, c1: number): Uint8Array {
  const m = new Uint8Array(S * S);
  for (let r = r0; r < r1; r += 1) for (let c = c0; c < c1; c += 1) m[r * S + c] = 1;
  return m;
}

async function put(dir: string, id: string, bytes: Uint8Array): Promise<string> {
  const folder = join(dir, `1.2.276.0.7230010.3.1.2.${id}`, `1.2.276.0.7230010.3.1.3.${id}`);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, `${id}.dcm`), bytes);
  return join(folder, `${id}.dcm`);
}

async function png(path: string): Promise<{ pixels: Uint8Array; width: number; height: number; channels: number }> {
  const meta = await sharp(path).metadata(); // channels as stored in the file
  const data = await sharp(path).toColourspace('b-w').raw().toBuffer();
  return { pixels: new Uint8Array(data), width: meta.width, height: meta.height, channels: meta.channels };
}

const regions = { pos1: [rect(20, 60, 30, 70)], pos2: [rect(10, 30, 10, 40), rect(50, 90, 56, 90)] };
const args = (out: string, size: number, extra: string[] = []) => [
  'prepare',
  '--train-dicom',
  trainDir,
  '--test-dicom',
  testDir,
  '--labels',
  labels,
  '--out',
  out,
  '--img-size',
  String(size),
  '--workers',
  '2',
  ...extra,
];

beforeAll(async () => {
  await put(trainDir, 'neg', await writeDicom({ pixels: testImage(S, S, 0), width: S, height: S }, { encoding: 'jpeg-baseline' }));
  await put(trainDir, 'pos1', await writeDicom({ pixels: testImage(S, S, 10), width: S, height: S }, { encoding: 'jpeg-baseline', fragments: 3 }));
  await put(trainDir, 'pos2', await writeDicom({ pixels: testImage(S, S, 20), width: S, height: S }, { encoding: 'explicit-le', photometric: 'MONOCHROME1' }));
  await put(trainDir, 'nolabel', await writeDicom({ pixels: testImage(S, S, 30), width: S, height: S }, { encoding: 'implicit-le' }));
  await put(testDir, 't1', await writeDicom({ pixels: testImage(S, S, 40), width: S, height: S }, { encoding: 'jpeg-baseline' }));
  await put(testDir, 't2', await writeDicom({ pixels: new Uint16Array(S * S).map((_, i) => i % 4096), width: S, height: S, bitsStored: 12 }, { encoding: 'explicit-le' }));
  const rows = ['ImageId, EncodedPixels', 'neg, -1', `pos1, ${encode(regions.pos1[0]!, S, S)}`, ...regions.pos2.map((m) => `pos2, ${encode(m, S, S)}`), 'ghost, -1'];
  writeFileSync(labels, `${rows.join('\n')}\n`);
});

describe('pneumo-native prepare', () => {
  it('writes train/, mask/ and test/ PNGs at the source size exactly as read() decodes them', async () => {
    const out = join(root, 'out96');
    const result = await runCli(args(out, S, ['--json']));
    expect(result.code, result.stderr).toBe(0);
    const report = parseJson<PrepareReport>(result);
    expect(report.train).toEqual({ total: 3, done: 3, skipped: 0, failed: 0 });
    expect(report.test).toEqual({ total: 2, done: 2, skipped: 0, failed: 0 });
    expect(report.unlabeled).toEqual(['nolabel']);
    expect(report.missingDicoms).toEqual(['ghost']);
    expect(existsSync(join(out, 'train', 'nolabel.png'))).toBe(false);
    expect(JSON.parse(readFileSync(join(out, 'prepare.json'), 'utf8'))).toEqual({ imgSize: S });
    for (const [split, id] of [['train', 'neg'], ['train', 'pos1'], ['train', 'pos2'], ['test', 't1'], ['test', 't2']] as const) {
      const image = await png(join(out, split, `${id}.png`));
      expect([image.width, image.height, image.channels]).toEqual([S, S, 1]);
      const dicomPath = join(split === 'train' ? trainDir : testDir, `1.2.276.0.7230010.3.1.2.${id}`, `1.2.276.0.7230010.3.1.3.${id}`, `${id}.dcm`);
      expect(Buffer.from(image.pixels).equals(Buffer.from((await read(dicomPath)).pixels)), `${split}/${id}`).toBe(true);
    }
    for (const id of ['neg', 'pos1', 'pos2'] as const) {
      const mask = await png(join(out, 'mask', `${id}.png`));
      const rles = id === 'neg' ? [] : regions[id].map((m) => encode(m, S, S));
      const expected = decodeUnion(rles, S, S).map((v) => v * 255);
      expect(Buffer.from(mask.pixels).equals(Buffer.from(expected)), `mask/${id}`).toBe(true);
    }
  });

  it('resizes images and masks, resumes without redoing done files, and refuses another size', async () => {
    const out = join(root, 'out48');
    const first = await runCli(args(out, 48));
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^train\s+3\s+3\s+0\s+0$/m);
    expect(first.stdout).toContain('1 training DICOM(s) have no row in the labels file and were not prepared:\n  nolabel');
    expect(first.stderr).toMatch(/prepare 5\/5 \(100%\)/);
    const image = await png(join(out, 'train', 'pos1.png'));
    expect([image.width, image.height, image.channels]).toEqual([48, 48, 1]);
    // pos1's region is rows 20-59, cols 30-69 at 96: rows 10-29, cols 15-34 at 48.
    const mask = (await png(join(out, 'mask', 'pos1.png'))).pixels;
    expect(new Set(mask)).toEqual(new Set([0, 255]));
    let area = 0;
    for (let r = 0; r < 48; r += 1) {
      for (let c = 0; c < 48; c += 1) {
        const v = mask[r * 48 + c]!;
        if (v) area += 1;
        if (r >= 11 && r <= 28 && c >= 16 && c <= 33) expect(v, `inside ${r},${c}`).toBe(255);
        if (r < 9 || r > 30 || c < 14 || c > 35) expect(v, `outside ${r},${c}`).toBe(0);
      }
    }
    expect(Math.abs(area - 400)).toBeLessThanOrEqual(40);
    const pos2 = (await png(join(out, 'mask', 'pos2.png'))).pixels;
    expect(pos2[10 * 48 + 12]).toBe(255); // first region
    expect(pos2[35 * 48 + 35]).toBe(255); // second region
    expect((await png(join(out, 'mask', 'neg.png'))).pixels.every((v) => v === 0)).toBe(true);

    const again = await runCli(args(out, 48, ['--json']));
    expect(again.code, again.stderr).toBe(0);
    const report = parseJson<PrepareReport>(again);
    expect(report.train).toEqual({ total: 3, done: 0, skipped: 3, failed: 0 });
    expect(report.test).toEqual({ total: 2, done: 0, skipped: 2, failed: 0 });

    rmSync(join(out, 'mask', 'pos2.png'));
    writeFileSync(join(out, 'test', 't1.png.tmp-123-1'), 'stale half-written file');
    const resumed = parseJson<PrepareReport>(await runCli(args(out, 48, ['--json'])));
    expect(resumed.train).toEqual({ total: 3, done: 1, skipped: 2, failed: 0 });
    expect(existsSync(join(out, 'mask', 'pos2.png'))).toBe(true);
    expect(existsSync(join(out, 'test', 't1.png.tmp-123-1'))).toBe(false);

    const otherSize = await runCli(args(out, 64));
    expect(otherSize.code).toBe(1);
    expect(otherSize.stderr).toContain(`${out} holds images prepared at 48x48, not 64x64: choose another --out or remove it`);
  });

  it('goes on past bad files, lists each with its reason and exits non-zero', async () => {
    const badDir = join(root, 'bad-test');
    const good = await put(badDir, 'good', await writeDicom({ pixels: testImage(S, S, 5), width: S, height: S }, { encoding: 'jpeg-baseline' }));
    const full = readFileSync(good);
    const truncated = await put(badDir, 'truncated', full.subarray(0, full.length - 200));
    const j2k = await put(badDir, 'j2k', Buffer.from(full.toString('latin1').replace('1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.91'), 'latin1'));
    const out = join(root, 'out-bad');
    const result = await runCli(['prepare', '--test-dicom', badDir, '--out', out, '--img-size', '32', '--workers', '1']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^test\s+3\s+1\s+0\s+2$/m);
    expect(result.stdout).toContain('2 file(s) failed:');
    expect(result.stdout).toContain(`  ${j2k}: unsupported transfer syntax JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)`);
    expect(result.stdout).toMatch(new RegExp(`  ${truncated.replace(/[.]/g, '\\.')}: the encapsulated Pixel Data is truncated`));
    expect(result.stderr).toContain('2 file(s) failed to prepare');
    expect(existsSync(join(out, 'test', 'good.png'))).toBe(true);
    const json = parseJson<PrepareReport>(await runCli(['prepare', '--test-dicom', badDir, '--out', out, '--img-size', '32', '--workers', '0', '--json']));
    expect(json.test).toEqual({ total: 3, done: 0, skipped: 1, failed: 2 });
    expect(json.failures.map((f) => [f.id, f.file])).toEqual([
      ['j2k', j2k],
      ['truncated', truncated],
    ]);
  });

  it('rejects incomplete usage with exit 2', async () => {
    const none = await runCli(['prepare', '--out', join(root, 'x'), '--img-size', '32']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('name --train-dicom, --test-dicom or both');
    const noLabels = await runCli(['prepare', '--train-dicom', trainDir, '--out', join(root, 'x'), '--img-size', '32']);
    expect(noLabels.code).toBe(2);
    expect(noLabels.stderr).toContain('--labels is required with --train-dicom');
    const badSize = await runCli(['prepare', '--test-dicom', testDir, '--out', join(root, 'x'), '--img-size', '0']);
    expect(badSize.code).toBe(2);
    expect(badSize.stderr).toContain('--img-size must be an integer between 1 and 65535 (got 0)');
  });
});
