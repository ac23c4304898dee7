// Training-loop data bench: the share of training time spent waiting for data, and the loop's
// images/s, with the trainer's BatchLoader (batches read, decoded and augmented natively on the
// thread pool, two batches ahead of the TrainEngine step) against the same work done in turn
// (load a batch, then step: what a loop without prefetching spends), in the same run on the same
// synthetic prepared dataset (tiny_unet_r18, first-place augmentation, combo loss, Adam).
// PNEUMO_BENCH_SIZES (default 256), PNEUMO_BENCH_BATCH (default 8), PNEUMO_BENCH_STEPS (default 12).
// bench/gpu.bench.mjs runs the same measurement on CUDA (unet_se50 at 1024, batch 8, mixed
// precision, from an image store: the data-path issue's GPU goal) through `config`.
import { join } from 'node:path';
import { augment, models, prepare, synth, trainingData, TrainEngine, folds, labels } from '../dist/index.js';
import { convertToStore } from '../dist/data/image-store.js';

export async function run({ tmpDir, quick, log, config = {} }) {
  const size = config.size ?? Number((process.env.PNEUMO_BENCH_SIZES ?? '256').split(',')[0]);
  const batch = config.batch ?? Number(process.env.PNEUMO_BENCH_BATCH ?? 8);
  const steps = config.steps ?? Number(process.env.PNEUMO_BENCH_STEPS ?? (quick ? 6 : 12));
  const device = config.device ?? 'cpu';
  const backbone = config.backbone ?? 'tiny_unet_r18';
  const images = batch * steps;
  const siim = join(tmpDir, `loader-siim${size}`);
  await synth.synthesize({ out: siim, train: images, test: 0, seed: 5, size, positiveRate: 0.5 });
  const data = join(tmpDir, `loader-png${size}`);
  await prepare.prepare({ trainDicom: join(siim, 'dicom-images-train'), labels: join(siim, 'train-rle.csv'), out: data, imgSize: size });
  await folds.writeFolds(join(data, 'folds.csv'), folds.makeFolds(await labels.readTrainLabels(join(siim, 'train-rle.csv')), { k: 2, seed: 1 }));
  if (config.store) await convertToStore({ dir: data, split: 'train' });
  const dataset = await trainingData.openPreparedDataset(data, 'folds.csv', { store: config.store ? 'auto' : 'png' });
  const samples = dataset.samples;
  const order = Int32Array.from({ length: samples.length }, (_, i) => i);
  const pipeline = augment.AugmentPipeline.preset('first-place');

  const model = await models.Model.create({ backbone, seed: 1, device, ...(config.precision ? { precision: config.precision } : {}) });
  const engine = TrainEngine.create(model, {
    optimizer: { algorithm: 'adam', lr: 1e-4, weightDecay: 5e-6 },
    loss: [{ kind: 'combo', options: { bceWeight: 3, diceWeight: 1, focalWeight: 4 } }],
    gradClip: 0.1,
  });
  const loader = new trainingData.BatchLoader(samples, { size, batchSize: batch, pipeline, channels: 3, depth: 2, device });
  // Warm-up: one batch and step (allocator, first-call costs); on a GPU four (cuDNN autotuning, the
  // step's CUDA graph is captured after three eager steps).
  const warm = await loader.load(order.subarray(0, batch), 1);
  for (let k = 0; k < (device === 'cpu' ? 1 : 4); k++) await engine.step(warm.images, warm.masks);
  warm.dispose();

  // Prefetched: the trainer's loop.
  loader.resetCounters();
  let t0 = performance.now();
  for await (const b of loader.epoch(order, 2, steps)) {
    await engine.step(b.images, b.masks);
    b.dispose();
  }
  const prefetched = { seconds: (performance.now() - t0) / 1000, wait: loader.waitSeconds };

  // In turn: load, then step.
  let loading = 0;
  t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    const l0 = performance.now();
    const b = await loader.load(order.subarray(s * batch, (s + 1) * batch), 3 + s);
    loading += (performance.now() - l0) / 1000;
    await engine.step(b.images, b.masks);
    b.dispose();
  }
  const sequential = { seconds: (performance.now() - t0) / 1000, wait: loading };
  engine.dispose();
  model.dispose();
  await dataset.store?.close();

  const waitShare = prefetched.wait / prefetched.seconds;
  const baseShare = sequential.wait / sequential.seconds;
  log(
    `loader @${size} batch ${batch}, ${steps} steps: data wait ${(100 * waitShare).toFixed(2)}% prefetched vs ${(100 * baseShare).toFixed(1)}% in turn; ` +
      `${(images / prefetched.seconds).toFixed(2)} vs ${(images / sequential.seconds).toFixed(2)} images/s`,
  );
  const what = `${backbone}${config.precision ? ` ${config.precision}` : ''} on ${device}, ${config.store ? 'image store' : 'PNG folder'}`;
  const notes = `${what}, first-place augmentation, combo loss, Adam; ${steps} steps of ${batch}; goal: wait < ${device === 'cpu' ? 5 : 2}% of training time`;
  return [
    {
      group: 'training',
      name: `data wait, share of training time (${device === 'cpu' ? '' : `${backbone} on ${device}, `}${size}px, batch ${batch})`,
      unit: '%',
      value: 100 * waitShare,
      baseline: { name: 'load then step, no prefetch', value: 100 * baseShare },
      higherIsBetter: false,
      notes: `${notes}; measured ${(100 * waitShare).toFixed(2)}%`,
    },
    {
      group: 'training',
      name: `training loop with loading (${device === 'cpu' ? '' : `${backbone} on ${device}, `}${size}px, batch ${batch})`,
      unit: 'images/s',
      value: images / prefetched.seconds,
      baseline: { name: 'load then step, no prefetch', value: images / sequential.seconds },
      higherIsBetter: true,
      notes,
    },
  ];
}
