/**
 * Interoperability with an independent implementation: DICOMs written and decoded by Debian's
 * dcmtk (img2dcm, dump2dcm, dcmconv, dcmcjpeg, dcmdjpeg, dcmcrle, dcmodify, dcm2pnm) compared
 * pixel for pixel with the source image and with dcmtk's own decoding.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { ensureRuntime } from '../../src/core/runtime.js';
import { Tensor } from '../../src/core/tensor.js';
import { decodeBatch, imageSource, readImageBatch } from '../../src/data/batch.js';
import { read } from '../../src/data/dicom.js';
import { writeDicom } from '../../src/data/dicom-write.js';
import { dcmtk, maxAbsDiff, meanAbsDiff, parsePgm, requireDcmtk, tempDir, testImage } from './dicom-fixtures.js';

const W = 96;
const H = 80;
/**
 * Test frames spanning the full 0-255 range: dcmtk's lossy JPEG encoder shifts an 8-bit image to
 * its used pixel range, so a full-range source keeps the comparison with the source direct.
 */
const frames = [0, 50, 100].map((phase) => {
  const image = testImage(W, H, phase);
  image[0] = 0;
  image[image.length - 1] = 255;
  return image;
});
const source = frames[0]!;
const tmp = tempDir('dcmtk');
const at = (name: string) => join(tmp.dir, name);
afterAll(() => tmp.cleanup());

/** Builds a DICOM with dump2dcm from tag lines and a raw pixel file. */
function dump2dcm(name: string, lines: string[], pixels: Uint8Array, vr: 'OB' | 'OW'): string {
  writeFileSync(at(`${name}.raw`), pixels);
  writeFileSync(
    at(`${name}.txt`),
    [
      '(0008,0016) UI =SecondaryCaptureImageStorage',
      '(0008,0018) UI [1.2.826.0.1.3680043.2.1125.1.42]',
      '(0008,0060) CS [CR]',
      '(0010,1010) AS [058Y]',
      '(0018,5101) CS [AP]',
      '(0028,0002) US 1',
      ...lines,
      `(7fe0,0010) ${vr} =${at(`${name}.raw`)}`,
    ].join('\n'),
  );
  dcmtk('dump2dcm', ['+te', at(`${name}.txt`), at(`${name}.dcm`)]);
  return at(`${name}.dcm`);
}

const gray8 = (rows: number, nFrames = 1) => [
  '(0028,0004) CS [MONOCHROME2]',
  ...(nFrames > 1 ? [`(0028,0008) IS [${nFrames}]`] : []),
  `(0028,0010) US ${rows}`,
  `(0028,0011) US ${W}`,
  '(0028,0100) US 8',
  '(0028,0101) US 8',
  '(0028,0102) US 7',
  '(0028,0103) US 0',
];

/** dcmtk's rendering of a DICOM to an 8-bit PGM (with extra dcm2pnm options). */
function dcm2pnm(path: string, options: string[] = []): Uint8Array {
  const out = `${path}.pgm`;
  dcmtk('dcm2pnm', [...options, '+op', path, out]);
  return parsePgm(readFileSync(out)).pixels;
}

beforeAll(() => {
  requireDcmtk();
});

describe('DICOMs written by dcmtk', () => {
  it('img2dcm JPEG: decodes exactly as sharp decodes the embedded JPEG, within 1 of dcmdjpeg', async () => {
    const jpeg = await sharp(source, { raw: { width: W, height: H, channels: 1 } }).toColourspace('b-w').jpeg({ quality: 92, mozjpeg: false }).toFile(at('src.jpg'));
    expect(jpeg.channels).toBe(1);
    dcmtk('img2dcm', ['-i', 'JPEG', at('src.jpg'), at('img2dcm.dcm')]);
    const ours = await read(at('img2dcm.dcm'));
    expect(ours.transferSyntax.uid).toBe('1.2.840.10008.1.2.4.50');
    expect([ours.width, ours.height]).toEqual([W, H]);
    const bySharp = new Uint8Array(await sharp(at('src.jpg')).toColourspace('b-w').raw().toBuffer());
    expect(Buffer.from(ours.pixels).equals(Buffer.from(bySharp))).toBe(true);
    dcmtk('dcmdjpeg', [at('img2dcm.dcm'), at('img2dcm-native.dcm')]);
    const byDcmtk = dcm2pnm(at('img2dcm-native.dcm'));
    expect(maxAbsDiff(ours.pixels, byDcmtk)).toBeLessThanOrEqual(1);
    expect(meanAbsDiff(ours.pixels, source)).toBeLessThan(3);
  });

  it('dump2dcm native 8-bit, converted to implicit and explicit VR by dcmconv: pixel-exact', async () => {
    const explicit = dump2dcm('native8', gray8(H), source, 'OB');
    dcmtk('dcmconv', ['+ti', explicit, at('native8-implicit.dcm')]);
    dcmtk('dcmconv', ['+te', at('native8-implicit.dcm'), at('native8-explicit.dcm')]);
    for (const [path, uid] of [
      [explicit, '1.2.840.10008.1.2.1'],
      [at('native8-implicit.dcm'), '1.2.840.10008.1.2'],
      [at('native8-explicit.dcm'), '1.2.840.10008.1.2.1'],
    ] as const) {
      const image = await read(path);
      expect(image.transferSyntax.uid).toBe(uid);
      expect(image).toMatchObject({ age: 58, viewPosition: 'AP', modality: 'CR', rows: H, columns: W });
      expect(Buffer.from(image.pixels).equals(Buffer.from(source))).toBe(true);
    }
  });

  it('dcmcjpeg Baseline, whole and in 1 KiB fragments: within 1 of dcmdjpeg, close to the source', async () => {
    const explicit = dump2dcm('cj', gray8(H), source, 'OB');
    for (const [name, extra] of [
      ['cj-whole', []],
      ['cj-frag', ['+fs', '1']],
    ] as const) {
      dcmtk('dcmcjpeg', ['+eb', ...extra, explicit, at(`${name}.dcm`)]);
      const ours = await read(at(`${name}.dcm`));
      expect(ours.transferSyntax.uid).toBe('1.2.840.10008.1.2.4.50');
      dcmtk('dcmdjpeg', [at(`${name}.dcm`), at(`${name}-d.dcm`)]);
      const decoded = await read(at(`${name}-d.dcm`));
      expect(maxAbsDiff(ours.pixels, decoded.pixels)).toBeLessThanOrEqual(1);
      expect(meanAbsDiff(ours.pixels, source)).toBeLessThan(3);
    }
    expect(readFileSync(at('cj-frag.dcm')).length).toBeGreaterThan(readFileSync(at('cj-whole.dcm')).length); // more item headers
  });

  it('multi-frame dcmcjpeg with and without a Basic Offset Table: frame 0', async () => {
    const all = new Uint8Array(W * H * 3);
    frames.forEach((f, i) => all.set(f, i * W * H));
    const explicit = dump2dcm('mf', gray8(H, 3), all, 'OB');
    const native = await read(explicit);
    expect(native.frames).toBe(3);
    expect(Buffer.from(native.pixels).equals(Buffer.from(source))).toBe(true);
    for (const [name, extra] of [
      ['mf-table', ['+fs', '1']],
      ['mf-notable', ['+fs', '1', '-ot']],
    ] as const) {
      dcmtk('dcmcjpeg', ['+eb', ...extra, explicit, at(`${name}.dcm`)]);
      const ours = await read(at(`${name}.dcm`));
      expect(ours.frames).toBe(3);
      dcmtk('dcmdjpeg', [at(`${name}.dcm`), at(`${name}-d.dcm`)]);
      const frame0 = (await read(at(`${name}-d.dcm`))).pixels;
      expect(maxAbsDiff(ours.pixels, frame0)).toBeLessThanOrEqual(1);
      expect(meanAbsDiff(ours.pixels, source)).toBeLessThan(3);
    }
  });

  it('MONOCHROME1 set by dcmodify is inverted like dcm2pnm displays it', async () => {
    const path = dump2dcm('mono1', gray8(H), source, 'OB');
    dcmtk('dcmodify', ['-nb', '-m', '(0028,0004)=MONOCHROME1', path]);
    const ours = await read(path);
    expect(ours.photometric).toBe('MONOCHROME1');
    expect(Array.from(ours.pixels)).toEqual(Array.from(source, (v) => 255 - v));
    expect(maxAbsDiff(dcm2pnm(path), ours.pixels)).toBeLessThanOrEqual(1);
  });

  it('16-bit with rescale and a multi-valued window: within 1 of dcm2pnm using window 1', async () => {
    const stored = new Uint16Array(W * H);
    for (let i = 0; i < stored.length; i += 1) stored[i] = (source[i]! * 16 + (i % 16)) & 0x0fff;
    const lines = [
      '(0028,0004) CS [MONOCHROME2]',
      `(0028,0010) US ${H}`,
      `(0028,0011) US ${W}`,
      '(0028,0100) US 16',
      '(0028,0101) US 12',
      '(0028,0102) US 11',
      '(0028,0103) US 0',
      '(0028,1050) DS [1800\\40]',
      '(0028,1051) DS [2600\\80]',
      '(0028,1052) DS [-100]',
      '(0028,1053) DS [1.5]',
    ];
    const path = dump2dcm('w16', lines, new Uint8Array(stored.buffer), 'OW');
    const ours = await read(path);
    expect(ours.window).toEqual({ center: 1800, width: 2600 });
    const byDcmtk = dcm2pnm(path, ['+Wi', '1']);
    expect(maxAbsDiff(ours.pixels, byDcmtk)).toBeLessThanOrEqual(1);
    dcmtk('dcmconv', ['+ti', path, at('w16-implicit.dcm')]);
    expect(Buffer.from((await read(at('w16-implicit.dcm'))).pixels).equals(Buffer.from(ours.pixels))).toBe(true);
    // Our writer's 16-bit file, rendered by dcmtk, agrees too.
    const mine = at('w16-mine.dcm');
    writeFileSync(mine, await writeDicom({ pixels: stored, width: W, height: H, bitsStored: 12 }, { encoding: 'explicit-le', rescale: { slope: 1.5, intercept: -100 }, window: { center: 1800, width: 2600 } }));
    expect(maxAbsDiff((await read(mine)).pixels, dcm2pnm(mine, ['+Wi', '1']))).toBeLessThanOrEqual(1);
  });

  it('rejects syntaxes dcmtk writes that the reader does not decode, by name and UID', async () => {
    const explicit = dump2dcm('unsupported', gray8(H), source, 'OB');
    const cases: [string, string[], string][] = [
      ['dcmcjpeg', ['+e1'], 'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1]) (1.2.840.10008.1.2.4.70)'],
      ['dcmcjpeg', ['+ee'], 'JPEG Extended (Process 2 & 4), 12-bit (1.2.840.10008.1.2.4.51)'],
      ['dcmcrle', [], 'RLE Lossless (1.2.840.10008.1.2.5)'],
      ['dcmconv', ['+tb'], 'Explicit VR Big Endian (1.2.840.10008.1.2.2)'],
      ['dcmconv', ['+td'], 'Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99)'],
    ];
    for (const [tool, args, text] of cases) {
      const out = at(`unsupported-${tool}${args.join('')}.dcm`);
      dcmtk(tool, [...args, explicit, out]);
      await expect(read(out)).rejects.toThrow(`${out}: unsupported transfer syntax ${text}`);
    }
  });

  it("dcmtk decodes the project's own JPEG DICOMs (fragmented too) to the same pixels", async () => {
    for (const fragments of [1, 4]) {
      const path = at(`mine-${fragments}.dcm`);
      writeFileSync(path, await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline', fragments }));
      dcmtk('dcmdjpeg', [path, `${path}.native.dcm`]);
      expect(maxAbsDiff((await read(path)).pixels, dcm2pnm(`${path}.native.dcm`))).toBeLessThanOrEqual(1);
    }
  });

  it("the native file reader takes dcmtk's JPEG Baseline files (sequences, fragments) and gives the TypeScript reader's pixels", async () => {
    // Files written by the tests above: img2dcm, dcmcjpeg whole and fragmented (with dcmtk's
    // Derivation Code Sequence), and syntaxes the fast path must leave to the full reader.
    const taken = ['img2dcm.dcm', 'cj-whole.dcm', 'cj-frag.dcm', 'mine-4.dcm'].map(at);
    const left = ['unsupported-dcmcjpeg+e1.dcm', 'unsupported-dcmcjpeg+ee.dcm', 'unsupported-dcmconv+tb.dcm', 'cj-whole-d.dcm'].map(at);
    const { images, fallback } = await ensureRuntime().readImageFiles([...taken, ...left], 64, false, 0, 1);
    new Tensor(images!).dispose();
    expect(fallback).toEqual([4, 5, 6, 7]);
    const ours = (await readImageBatch(taken, { size: 64 })).takeData('uint8');
    const sources = await Promise.all(taken.map(async (p) => imageSource(await readFile(p), p)));
    const reference = (await decodeBatch(sources, { size: 64 })).takeData('uint8');
    expect(Buffer.from(ours).equals(Buffer.from(reference))).toBe(true);
  });
});
