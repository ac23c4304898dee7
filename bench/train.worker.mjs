// One native measurement in a fresh process, for bench/train.bench.mjs:
// node train.worker.mjs <backbone> <weights.pt> <size> <batch> <reps> [precision]. A full training step through
// TrainEngine (forward, fused combo loss (3,1,4), backward, clip 0.1, Adam lr 1e-4 wd 5e-6, zero
// grad: one native call), like bench/python/train_baseline.py. Prints one JSON line.
import { Tensor, TrainEngine, getThreads, models } from '../dist/index.js';

const [backbone, weights, sizeArg, batchArg, repsArg, precision = 'fp32'] = process.argv.slice(2);
const size = Number(sizeArg);
const batch = Number(batchArg);
const reps = Number(repsArg);
const model = await models.Model.create({ backbone, seed: 1, precision });
await model.loadStateDict(weights, { strict: true });
const engine = TrainEngine.create(model, {
  optimizer: { algorithm: 'adam', lr: 1e-4, weightDecay: 5e-6 },
  loss: [{ kind: 'combo', options: { bceWeight: 3, diceWeight: 1, focalWeight: 4 } }],
  gradClip: 0.1,
});
const x = await Tensor.randn([batch, 3, size, size]);
const mask = new Float32Array(batch * size * size);
for (let i = 0; i < mask.length; i++) {
  const y = Math.floor((i % (size * size)) / size);
  const c = i % size;
  mask[i] = (y - size / 2) ** 2 + (c - size / 3) ** 2 < (size / 6) ** 2 ? 1 : 0;
}
const t = Tensor.from(mask, [batch, 1, size, size]);
const ms = () => Number(process.hrtime.bigint()) / 1e6;

await engine.step(x, t);
const start = ms();
let loss = 0;
for (let i = 0; i < reps; i++) loss = (await engine.step(x, t)).loss;
const msPerStep = (ms() - start) / reps;
process.stdout.write(
  `${JSON.stringify({ msPerStep, imagesPerSecond: (batch * 1000) / msPerStep, loss, peakRssMb: process.resourceUsage().maxRSS / 1024, threads: getThreads(), precision: model.spec.precision })}\n`,
);
engine.dispose();
model.dispose();
