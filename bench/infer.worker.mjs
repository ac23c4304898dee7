// One native measurement for bench/infer.bench.mjs, in a fresh process:
// node infer.worker.mjs <backbone> <weights.pt> <size> <batch> <reps>. Flip-TTA prediction
// (Model.predict with tta: one batched forward over [x, flip(x)]) on the same deterministic input
// as bench/python/infer_baseline.py. Prints { imagesPerSecond, meanProbability, checksum, threads }.
import { Tensor, getThreads, models } from '../dist/index.js';

const [backbone, weights, sizeArg, batchArg, repsArg] = process.argv.slice(2);
const size = Number(sizeArg);
const batch = Number(batchArg);
const reps = Number(repsArg);
const model = await models.Model.create({ backbone, seed: 1 });
await model.loadStateDict(weights, { strict: true });
model.eval();
const data = new Float32Array(batch * 3 * size * size);
for (let b = 0; b < batch; b++) {
  for (let c = 0; c < 3; c++) {
    const base = (b * 3 + c) * size * size;
    for (let i = 0; i < size * size; i++) data[base + i] = Math.sin(i * 0.001 + c + b);
  }
}
const x = Tensor.from(data, [batch, 3, size, size]);
const predict = async () => {
  const out = await model.predict(x, { tta: true });
  out.label?.dispose();
  return out.mask;
};
(await predict()).dispose(); // builds the frozen inference module
let last;
const t = performance.now();
for (let i = 0; i < reps; i++) {
  last?.dispose();
  last = await predict();
}
const seconds = (performance.now() - t) / 1000 / reps;
const p = await last.data('float32');
let mean = 0;
let checksum = 0;
for (let i = 0; i < p.length; i++) {
  mean += p[i];
  checksum += p[i] * (i % 97);
}
process.stdout.write(`${JSON.stringify({ imagesPerSecond: batch / seconds, meanProbability: mean / p.length, checksum, threads: getThreads() })}\n`);
last.dispose();
model.dispose();
