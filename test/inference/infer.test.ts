import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { Tensor } from '../../src/core/tensor.js';
import { readImageBatch } from '../../src/data/batch.js';
import { inferMaps, listImages } from '../../src/inference/infer.js';
import { MapReader } from '../../src/inference/maps.js';
import { averageCheckpoints } from '../../src/training/checkpoint-averaging.js';
import { Model } from '../../src/models/model.js';
import { AugmentPipeline } from '../../src/training/augment/index.js';

const dir = await mkdtemp(join(tmpdir(), 'pn-infer-'));
afterAll(() => rm(dir, { recursive: true, force: true }));
const S = 64;
const ckpt = [join(dir, 'm1.ckpt'), join(dir, 'm2.ckpt')];

beforeAll(async () => {
  await mkdir(join(dir, 'images', 'sub'), { recursive: true });
  const rng = new Random(3);
  for (let i = 0; i < 5; i++) {
    const pixels = Buffer.from(Uint8Array.from({ length: S * S }, (_, p) => Math.min(255, ((p % S) * 3 + rng.int(0, 60)) | 0)));
    await sharp(pixels, { raw: { width: S, height: S, channels: 1 } }).png().toFile(join(dir, 'images', i < 3 ? '' : 'sub', `img${i}.png`));
  }
  for (const [k, path] of ckpt.entries()) {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 10 + k, classificationHead: true });
    await model.save(path, { metadata: { imgSize: S, fold: k, epoch: 3 } });
    model.dispose();
  }
}, 120_000);

/** The reference: sigmoid of each pass in eval mode, the flipped pass flipped back, averaged. */
async function reference(path: string, files: string[]): Promise<{ maps: Float32Array; labels: Float32Array }> {
  const model = (await Model.load(path)).eval();
  const uint8 = await readImageBatch(files, { size: S });
  const pipeline = AugmentPipeline.preset('none');
  const x = (await pipeline.apply(uint8, undefined, pipeline.sample(new Random(0), files.length, S, S), { channels: 3 })).images;
  const data = await x.data('float32');
  const flipped = new Float32Array(data.length);
  for (let row = 0; row < data.length / S; row++) for (let c = 0; c < S; c++) flipped[row * S + c] = data[row * S + (S - 1 - c)]!;
  const xf = Tensor.from(flipped, x.shape);
  const a = await model.forward(x);
  const b = await model.forward(xf);
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const pa = await a.mask.data('float32');
  const pb = await b.mask.data('float32');
  const maps = new Float32Array(pa.length);
  for (let row = 0; row < pa.length / S; row++) for (let c = 0; c < S; c++) maps[row * S + c] = (sig(pa[row * S + c]!) + sig(pb[row * S + (S - 1 - c)]!)) / 2;
  const la = await a.label!.data('float32');
  const lb = await b.label!.data('float32');
  const labels = Float32Array.from(la, (v, i) => (sig(v) + sig(lb[i]!)) / 2);
  for (const t of [uint8, x, xf, a.mask, a.label!, b.mask, b.label!]) t.dispose();
  model.dispose();
  return { maps, labels };
}

describe('infer', () => {
  it('lists images recursively, sorted by id', async () => {
    const images = await listImages(join(dir, 'images'));
    expect(images.map((i) => i.id)).toEqual(['img0', 'img1', 'img2', 'img3', 'img4']);
  });

  it('writes the weighted mean of flip-TTA predictions: the mean of the two passes per model', async () => {
    const images = await listImages(join(dir, 'images'));
    const out = join(dir, 'maps.pnm');
    const r = await inferMaps([{ path: ckpt[0]!, weight: 1 }, { path: ckpt[1]!, weight: 3 }], images, out, { tta: true, dtype: 'float16', batchSize: 2 });
    expect(r).toMatchObject({ images: 5, predicted: 5, size: S, tta: true, labels: true });
    expect(r.models.map((m) => m.weight)).toEqual([0.25, 0.75]);
    const [r1, r2] = [await reference(ckpt[0]!, images.map((i) => i.path)), await reference(ckpt[1]!, images.map((i) => i.path))];
    const maps = await MapReader.open(out);
    expect(maps.producer).toMatchObject({ command: 'infer', tta: true, size: S });
    let worst = 0;
    for (let i = 0; i < 5; i++) {
      const got = await maps.read(i);
      for (let p = 0; p < S * S; p++) worst = Math.max(worst, Math.abs(got[p]! - (0.25 * r1.maps[i * S * S + p]! + 0.75 * r2.maps[i * S * S + p]!)));
      expect(maps.label(i)).toBeCloseTo(0.25 * r1.labels[i]! + 0.75 * r2.labels[i]!, 4);
    }
    expect(worst).toBeLessThan(1e-3); // float16 storage
    await maps.close();
  }, 120_000);

  it('predicts with an exported TorchScript model as with its checkpoint', async () => {
    const images = (await listImages(join(dir, 'images'))).slice(0, 2);
    const exported = join(dir, 'm1.pt');
    const m = await Model.load(ckpt[0]!);
    await m.exportTorchScript(exported);
    m.dispose();
    const a = await inferMaps([{ path: ckpt[0]! }], images, join(dir, 'from-ckpt.pnm'), { tta: true, dtype: 'float16' });
    const b = await inferMaps([{ path: exported }], images, join(dir, 'from-export.pnm'), { tta: true, dtype: 'float16', size: S });
    expect(b.models[0]!.kind).toBe('export');
    const [ra, rb] = [await MapReader.open(a.out), await MapReader.open(b.out)];
    let worst = 0;
    for (let i = 0; i < 2; i++) {
      const [x, y] = [await ra.read(i), await rb.read(i)];
      for (let p = 0; p < x.length; p++) worst = Math.max(worst, Math.abs(x[p]! - y[p]!));
    }
    expect(worst).toBeLessThan(2e-3);
    await Promise.all([ra.close(), rb.close()]);
  }, 120_000);

  it('resumes a partial output and refuses a different one', async () => {
    const images = await listImages(join(dir, 'images'));
    const out = join(dir, 'resume.pnm');
    const first = await inferMaps([{ path: ckpt[0]! }], images.slice(0, 5), out, { batchSize: 5 });
    expect(first.predicted).toBe(5);
    const again = await inferMaps([{ path: ckpt[0]! }], images.slice(0, 5), out, {});
    expect(again.predicted).toBe(0);
    await expect(inferMaps([{ path: ckpt[1]! }], images, out, {})).rejects.toThrow(/already holds other maps/);
    await expect(inferMaps([{ path: ckpt[0]! }], images, join(dir, 'odd.pnm'), { size: 50 })).rejects.toThrow(/multiple of 32 .* but received 50/);
  }, 120_000);
});

describe('swa', () => {
  it('averages checkpoints with weights, then recomputes BatchNorm statistics on images', async () => {
    const dicts: Map<string, Tensor>[] = [];
    for (const path of ckpt) {
      const m = await Model.load(path);
      dicts.push(await m.stateDict());
      m.dispose();
    }
    const conv = [...dicts[0]!.keys()].find((k) => k.endsWith('conv1.weight'))!;
    const bnMean = [...dicts[0]!.keys()].find((k) => k.endsWith('bn1.running_mean'))!;
    const expectMix = async (state: Map<string, Tensor>, name: string, tol: number) => {
      const [a, b, got] = [await dicts[0]!.get(name)!.data('float32'), await dicts[1]!.get(name)!.data('float32'), await state.get(name)!.data('float32')];
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - (0.25 * a[i]! + 0.75 * b[i]!)));
      return worst <= tol;
    };
    const plain = join(dir, 'avg.ckpt');
    const r = await averageCheckpoints(ckpt, plain, { weights: [1, 3] });
    expect(r).toMatchObject({ bnImages: 0, bnBatches: 0 });
    expect(r.checkpoints.map((c) => c.weight)).toEqual([0.25, 0.75]);
    const avg = await Model.loadCheckpoint(plain);
    const avgState = await avg.model.stateDict();
    expect(await expectMix(avgState, conv, 1e-6)).toBe(true);
    expect(await expectMix(avgState, bnMean, 1e-6)).toBe(true);
    expect(avg.metadata).toMatchObject({ writer: 'pneumo-native swa', imgSize: S, bnBatches: 0 });
    avg.model.dispose();

    const images = await listImages(join(dir, 'images'));
    const swa = join(dir, 'swa.ckpt');
    const s = await averageCheckpoints(ckpt, swa, { weights: [1, 3], images, batchSize: 2 });
    // 5 images in batches of 2: the lone last image is left out
    expect(s).toMatchObject({ bnImages: 4, bnBatches: 2, size: S });
    const m = await Model.load(swa);
    const state = await m.stateDict();
    expect(await expectMix(state, conv, 1e-6)).toBe(true);
    expect(await expectMix(state, bnMean, 1e-6)).toBe(false);
    const out = await m.predict(Tensor.from(new Float32Array(3 * S * S), [1, 3, S, S]));
    expect(out.mask.shape).toEqual([1, 1, S, S]);
    m.dispose();
  }, 120_000);
});
