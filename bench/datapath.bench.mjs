// Data path bench (issue 19), every figure against a baseline measured in the same run:
// 1. The training loader at 1024 px with the first-place augmentation, one batch at a time: images
//    per CPU-second ("per core": process CPU time, all threads) and per wall second, for
//    - before: the path when issue 19 was filed (each PNG read and decoded by sharp in JavaScript,
//      the bytes handed to the native batch, masks thresholded in JavaScript when resized), then
//      augmented by the ATen path (coordinate tensors and grid_sample, photometric and
//      normalisation as separate tensor ops), which CPU batches ran then;
//    - native PNG: the same PNG folder through libpng on the native decode threads;
//    - image store: train.pnimg (uint8 bytes at fixed offsets, no decoding).
// 2. Store read + uint8 -> normalised batch at 512 (the loader with normalisation only, two batches
//    in flight): the native store reader (positional reads straight into the batch on a native
//    worker) against, in the same run, the PNG folder (native libpng) and the JavaScript store
//    reader the loader used before (fs.read per image, CRC-32 in JS, a copy into the batch).
// PNEUMO_BENCH_IMAGES (default 24), PNEUMO_BENCH_BATCH (default 4); PNEUMO_BENCH_DATAPATH=512
// runs part 2 only.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { augment, folds, labels, prepare, synth, trainingData, Tensor } from '../dist/index.js';
import { Random, deriveSeed } from '../dist/core/random.js';
import { decodeBatch, imageSource } from '../dist/data/batch.js';
import { convertToStore } from '../dist/data/image-store.js';

async function dataset(tmpDir, n, size) {
  const siim = join(tmpDir, `dp-siim${size}`);
  await synth.synthesize({ out: siim, train: n, test: 0, seed: 5, size: 1024, positiveRate: 0.5 });
  const data = join(tmpDir, `dp-png${size}`);
  await prepare.prepare({ trainDicom: join(siim, 'dicom-images-train'), labels: join(siim, 'train-rle.csv'), out: data, imgSize: size });
  await folds.writeFolds(join(data, 'folds.csv'), folds.makeFolds(await labels.readTrainLabels(join(siim, 'train-rle.csv')), { k: 2, seed: 1 }));
  await convertToStore({ dir: data, split: 'train' });
  return data;
}

/** The loader's load() before issue 19: sharp in JavaScript, JS threshold on resize, ATen augmentation. */
async function loadBefore(samples, size, preparedSize, pipeline, seed) {
  const read = async (paths) => decodeBatch(await Promise.all(paths.map(async (p) => imageSource(await readFile(p), p))), { size }, paths);
  const [raw, rawMasks] = await Promise.all([read(samples.map((s) => s.image)), read(samples.map((s) => s.mask))]);
  let masks = rawMasks;
  if (preparedSize !== size) {
    const data = rawMasks.takeData('uint8');
    for (let i = 0; i < data.length; i++) data[i] = data[i] >= 128 ? 255 : 0;
    masks = Tensor.from(data, [samples.length, 1, size, size]);
  }
  const plan = pipeline.sample(new Random(seed), samples.length, size, size);
  const out = await pipeline.apply(raw, masks, plan, { channels: 3, resample: 'aten' });
  raw.dispose();
  masks.dispose();
  out.images.dispose();
  out.masks.dispose();
}

async function measure(fn, images) {
  await fn(0); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const rounds = 2;
  for (let r = 1; r <= rounds; r++) await fn(r);
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return { perCore: (rounds * images) / cpuSeconds, wall: (rounds * images) / wall };
}

export async function run({ tmpDir, quick, log }) {
  const n = Number(process.env.PNEUMO_BENCH_IMAGES ?? (quick ? 8 : 24));
  const batch = Number(process.env.PNEUMO_BENCH_BATCH ?? 4);
  const entries = [];
  const pipeline = augment.AugmentPipeline.preset('first-place');

  if (process.env.PNEUMO_BENCH_DATAPATH !== '512') entries.push(...(await part1024({ tmpDir, n, batch, log, pipeline })));
  entries.push(...(await part512({ tmpDir, n, quick, log })));
  return entries;
}

async function part1024({ tmpDir, n, batch, log, pipeline }) {
  const entries = [];
  // 1. Loader at 1024 with the first-place augmentation.
  const data = await dataset(tmpDir, n, 1024);
  const fromPng = await trainingData.openPreparedDataset(data, 'folds.csv', { store: 'png' });
  const fromStore = await trainingData.openPreparedDataset(data, 'folds.csv');
  const batches = (samples) => Array.from({ length: Math.ceil(samples.length / batch) }, (_, b) => samples.slice(b * batch, (b + 1) * batch));
  const loaderOf = (samples) => new trainingData.BatchLoader(samples, { size: 1024, batchSize: batch, pipeline, channels: 3 });
  const run1024 = (samples, before) => async (round) => {
    const loader = loaderOf(samples);
    let b = 0;
    for (const chunk of batches(samples)) {
      if (before) await loadBefore(chunk, 1024, 1024, pipeline, round * 1000 + b++);
      else (await loader.load(chunk.map((s) => samples.indexOf(s)), round * 1000 + b++)).dispose();
    }
  };
  const before = await measure(run1024(fromPng.samples, true), n);
  const png = await measure(run1024(fromPng.samples, false), n);
  const store = await measure(run1024(fromStore.samples, false), n);
  log(`loader @1024 first-place, batch ${batch}: images per CPU-second before ${before.perCore.toFixed(2)}, native PNG ${png.perCore.toFixed(2)}, store ${store.perCore.toFixed(2)}; images/s ${before.wall.toFixed(2)} / ${png.wall.toFixed(2)} / ${store.wall.toFixed(2)}`);
  for (const [name, m] of [['native PNG (libpng)', png], ['image store', store]]) {
    entries.push({
      group: 'data path',
      name: `loader @1024, first-place augmentation, ${name}, per core`,
      unit: 'images/CPU-s',
      value: m.perCore,
      baseline: { name: 'before: sharp in JS, JS mask threshold, ATen augmentation', value: before.perCore },
      higherIsBetter: true,
      goal: 3,
      notes: `batch ${batch}, one batch at a time; wall ${m.wall.toFixed(2)} vs ${before.wall.toFixed(2)} images/s`,
    });
  }
  await fromStore.store?.close();
  return entries;
}

/**
 * The loader's epoch before the native store reader (depth 2): ImageStoreReader.readBatch (one
 * fs.read per image and mask, CRC-32 in JS), Tensor.from copies, then the same pipeline.
 */
async function* epochBefore(samples, reader, pipeline, channels, batchSize, seed) {
  const count = Math.ceil(samples.length / batchSize);
  const load = async (b) => {
    const chunk = samples.slice(b * batchSize, (b + 1) * batchSize);
    const n = chunk.length;
    const { images, masks } = await reader.readBatch(chunk.map((s) => s.store.index));
    const img = Tensor.from(images, [n, 1, reader.size, reader.size]);
    const msk = Tensor.from(masks, [n, 1, reader.size, reader.size]);
    const plan = pipeline.sample(new Random(deriveSeed(seed, b)), n, reader.size, reader.size);
    const out = await pipeline.apply(img, msk, plan, { channels });
    img.dispose();
    msk.dispose();
    const labels = Tensor.from(Float32Array.from(chunk, (s) => (s.positive ? 1 : 0)), [n, 1]);
    return { dispose: () => [out.images, out.masks, labels].forEach((t) => t.dispose()) };
  };
  const pending = [];
  let next = 0;
  const schedule = () => {
    while (next < count && pending.length < 2) pending.push(load(next++));
  };
  schedule();
  while (pending.length > 0) {
    const batch = await pending.shift();
    schedule();
    yield batch;
  }
}

async function part512({ tmpDir, n, quick, log }) {
  const entries = [];
  // 2. Store read + uint8 -> normalised batch at 512, two batches in flight (the loader's epoch).
  const data512 = await dataset(tmpDir, n, 512);
  const png512 = await trainingData.openPreparedDataset(data512, 'folds.csv', { store: 'png' });
  const store512 = await trainingData.openPreparedDataset(data512, 'folds.csv');
  const normalizeOnly = (channels) =>
    channels === 3 ? augment.AugmentPipeline.preset('none') : new augment.AugmentPipeline([{ type: 'Normalize', mean: [0.485], std: [0.229], max_pixel_value: 255 }]);
  const rounds = quick ? 2 : 6;
  const epochRate = async (samples, channels, before = false) => {
    const loader = new trainingData.BatchLoader(samples, { size: 512, batchSize: 8, pipeline: normalizeOnly(channels), channels, depth: 2 });
    const order = Int32Array.from({ length: samples.length }, (_, i) => i);
    const epoch = (seed) => (before ? epochBefore(samples, store512.store, normalizeOnly(channels), channels, 8, seed) : loader.epoch(order, seed));
    for await (const b of epoch(1)) b.dispose(); // warm-up
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) for await (const b of epoch(r)) b.dispose();
    return (rounds * samples.length) / ((performance.now() - t0) / 1000);
  };
  for (const channels of [1, 3]) {
    const fromStoreRate = await epochRate(store512.samples, channels);
    const fromPngRate = await epochRate(png512.samples, channels);
    const beforeRate = await epochRate(store512.samples, channels, true);
    log(
      `store read + normalise @512, ${channels} channel(s): ${fromStoreRate.toFixed(0)} images/s (native store reader) vs ${fromPngRate.toFixed(0)} from PNGs (native libpng), ` +
        `${beforeRate.toFixed(0)} with the JavaScript store reader (before); store/PNG ${(fromStoreRate / fromPngRate).toFixed(2)}x`,
    );
    entries.push({
      group: 'data path',
      name: `native store reader vs JavaScript store reader, normalised [B, ${channels}, 512, 512] with masks`,
      unit: 'images/s',
      value: fromStoreRate,
      baseline: { name: 'before: JS reader (fs.read per image, CRC-32 in JS, copy into the batch)', value: beforeRate },
      higherIsBetter: true,
      notes: `batch 8, two batches in flight, ${n} images x ${rounds} epochs`,
    });
    entries.push({
      group: 'data path',
      name: `image store read + uint8 -> normalised float32 [B, ${channels}, 512, 512] with masks`,
      unit: 'images/s',
      value: fromStoreRate,
      baseline: { name: 'PNG folder, native libpng decode', value: fromPngRate },
      higherIsBetter: true,
      notes: 'goal >= 1,000 images/s on 2 cores; loader with normalisation only, batch 8, two batches in flight',
    });
  }
  await store512.store?.close();
  return entries;
}
