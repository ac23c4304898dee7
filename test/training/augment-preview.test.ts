/** `augment-preview`: the grid PNG from prepared PNGs (compiled CLI in dist/). */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDicom } from '../../src/data/dicom-write.js';
import { encode } from '../../src/data/rle.js';
import { readImageBatch } from '../../src/data/batch.js';
import { loadPreviewSamples, previewLayout } from '../../src/training/preview.js';
import type { AugmentPreviewReport } from '../../src/training/preview.js';
import { parseJson, runCli } from '../helpers/cli.js';

const S = 64;
const root = mkdtempSync(join(tmpdir(), 'pn-augment-preview-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  mkdirSync(join(root, 'train'));
  mkdirSync(join(root, 'mask'));
  for (let i = 0; i < 6; i++) {
    const image = new Uint8Array(S * S);
    const mask = new Uint8Array(S * S);
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const inside = i % 2 === 0 && Math.hypot(x - 20 - i, y - 30) < 10;
        image[y * S + x] = inside ? 220 : 40 + ((x + y + i) % 50);
        mask[y * S + x] = inside ? 255 : 0;
      }
    }
    const raw = { raw: { width: S, height: S, channels: 1 as const } };
    await sharp(image, raw).png().toFile(join(root, 'train', `img${i}.png`));
    await sharp(mask, raw).png().toFile(join(root, 'mask', `img${i}.png`));
  }
  writeFileSync(join(root, 'aug.json'), JSON.stringify([{ type: 'HorizontalFlip', p: 1 }, { type: 'ShiftScaleRotate', p: 1, rotate_limit: 30 }]));
});

describe('augment-preview', () => {
  it('writes a PNG grid of the expected size, positives first, with a preset or a config file', async () => {
    const out = join(root, 'grid.png');
    const result = await runCli(['augment-preview', '--images', join(root, 'train'), '--masks', join(root, 'mask'), '--preset', 'first-place', '--n', '4', '--size', String(S), '--seed', '3', '--out', out, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const report = parseJson<AugmentPreviewReport>(result);
    const layout = previewLayout(4, S);
    expect([report.width, report.height]).toEqual([layout.width, layout.height]);
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height, meta.format, meta.channels]).toEqual([layout.width, layout.height, 'png', 3]);
    // The three images with a mask come first.
    expect(report.ids.slice(0, 3).sort()).toEqual(['img0', 'img2', 'img4']);
    expect(report.plan).toHaveLength(4);

    const fromConfig = await runCli(['augment-preview', '--images', join(root, 'train'), '--masks', join(root, 'mask'), '--config', join(root, 'aug.json'), '--n', '6', '--size', String(S), '--out', join(root, 'g2.png'), '--json']);
    expect(fromConfig.code, fromConfig.stderr).toBe(0);
    const second = parseJson<AugmentPreviewReport>(fromConfig);
    expect(second.plan.every((r) => r.applied.join() === 'HorizontalFlip,ShiftScaleRotate')).toBe(true);
    expect((await sharp(join(root, 'g2.png')).metadata()).width).toBe(previewLayout(6, S).width);
  });

  it('reads raw DICOMs with RLE labels, resizing the masks to the preview size', async () => {
    const dicomDir = join(root, 'dicom-images-train', 'study', 'series');
    mkdirSync(dicomDir, { recursive: true });
    const rows = ['ImageId, EncodedPixels'];
    for (let i = 0; i < 3; i++) {
      const pixels = new Uint8Array(96 * 96).map((_, k) => 60 + ((k + i * 7) % 90));
      writeFileSync(join(dicomDir, `d${i}.dcm`), await writeDicom({ pixels, width: 96, height: 96 }, { encoding: 'explicit-le' }));
      const mask = new Uint8Array(96 * 96);
      if (i > 0) for (let y = 20; y < 50; y++) for (let x = 30; x < 60; x++) mask[y * 96 + x] = 1;
      rows.push(`d${i}, ${i > 0 ? encode(mask, 96, 96) : '-1'}`);
    }
    writeFileSync(join(root, 'train-rle.csv'), `${rows.join('\n')}\n`);
    const out = join(root, 'dicom-grid.png');
    const result = await runCli(['augment-preview', '--images', join(root, 'dicom-images-train'), '--labels', join(root, 'train-rle.csv'), '--label-size', '96', '--preset', 'second-place', '--n', '3', '--size', '48', '--out', out, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const report = parseJson<AugmentPreviewReport>(result);
    expect(report.ids.slice(0, 2).sort()).toEqual(['d1', 'd2']);
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height]).toEqual([previewLayout(3, 48).width, previewLayout(3, 48).height]);
  });

  it('loads images and masks exactly as training reads them (readImageBatch at the preview size)', async () => {
    for (const size of [S, 40]) {
      const samples = await loadPreviewSamples({ images: join(root, 'train'), masks: join(root, 'mask'), n: 4, size, seed: 5 });
      expect(samples).toHaveLength(4);
      for (const s of samples) {
        const image = (await readImageBatch([join(root, 'train', `${s.id}.png`)], { size })).takeData('uint8');
        expect(Buffer.from(s.image).equals(Buffer.from(image)), `${s.id} at ${size}`).toBe(true);
        const mask = (await readImageBatch([join(root, 'mask', `${s.id}.png`)], { size, threshold: true })).takeData('uint8');
        expect(Buffer.from(s.mask!).equals(Buffer.from(mask.map((v) => v / 255))), `${s.id} mask at ${size}`).toBe(true);
      }
    }
  });

  it('names the closest transform for a typo in the config', async () => {
    writeFileSync(join(root, 'bad.json'), JSON.stringify([{ type: 'ShiftScaleRotat' }]));
    const result = await runCli(['augment-preview', '--images', join(root, 'train'), '--config', join(root, 'bad.json'), '--out', join(root, 'x.png')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/did you mean "ShiftScaleRotate"/);
  });
});
