// One native GPU measurement in a fresh process, for bench/gpu.bench.mjs:
//   node gpu.worker.mjs <backbone> <weights.pt> <size> <batch> <precision> <reps>
// On cuda:0 with cuDNN autotuning (fixed size) and channels-last: a training step through
// TrainEngine (forward, fused combo loss (3,1,4), backward, clip 0.1, Adam lr 1e-4 wd 5e-6; fp16
// with the dynamic gradient scaler), then eval forwards (Model.predict) without and with flip TTA.
// Peak GPU memory per phase from the CUDA caching allocator. Whole-step CUDA graphs as the
// trainer uses them (cudaGraphs 'auto': captured after 3 eager steps; PNEUMO_BENCH_GRAPHS=off for
// eager steps); predict captures on its second call at a shape. Prints one JSON line.
import { Tensor, TrainEngine, cudaMemoryStats, models, setCudnnOptions } from '../dist/index.js';

const [backbone, weights, sizeArg, batchArg, precision, repsArg] = process.argv.slice(2);
const size = Number(sizeArg);
const batch = Number(batchArg);
const reps = Number(repsArg);
setCudnnOptions({ benchmark: true, deterministic: false });
const model = await models.Model.create({ backbone, seed: 1, device: 'cuda', precision });
await model.loadStateDict(weights, { strict: true });
const x = await Tensor.randn([batch, 3, size, size], { device: 'cuda' });
const mask = new Float32Array(batch * size * size);
for (let i = 0; i < mask.length; i++) {
  const y = Math.floor((i % (size * size)) / size);
  const c = i % size;
  mask[i] = (y - size / 2) ** 2 + (c - size / 3) ** 2 < (size / 6) ** 2 ? 1 : 0;
}
const t = await Tensor.from(mask, [batch, 1, size, size]).to('cuda');
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sync = (reset = false) => cudaMemoryStats(0, reset);

const engine = TrainEngine.create(model, {
  optimizer: { algorithm: 'adam', lr: 1e-4, weightDecay: 5e-6 },
  loss: [{ kind: 'combo', options: { bceWeight: 3, diceWeight: 1, focalWeight: 4 } }],
  gradClip: 0.1,
  cudaGraphs: process.env.PNEUMO_BENCH_GRAPHS ?? 'auto',
});
for (let i = 0; i < 5; i++) await engine.step(x, t); // warm-up: autotuning, allocator, graph capture
sync(true);
let start = now();
let loss = 0;
let skipped = 0;
let graphed = 0;
for (let i = 0; i < reps; i++) {
  const r = await engine.step(x, t);
  loss = r.loss;
  if (!r.stepped) skipped += 1;
  if (r.graphed) graphed += 1;
}
const graph = engine.graphStatus();
const trainMemory = sync(false);
const trainMs = (now() - start) / reps;
engine.dispose();

async function evalPhase(tta) {
  const cudaGraph = process.env.PNEUMO_BENCH_GRAPHS !== 'off';
  for (let i = 0; i < 3; i++) (await model.predict(x, { tta, cudaGraph })).mask.dispose();
  sync(true);
  const begin = now();
  for (let i = 0; i < reps; i++) (await model.predict(x, { tta, cudaGraph })).mask.dispose();
  const memory = sync(false);
  return { ms: (now() - begin) / reps, peakMb: memory.peakAllocated / 2 ** 20 };
}
const evalPlain = await evalPhase(false);
const evalTta = await evalPhase(true);
process.stdout.write(
  `${JSON.stringify({
    trainImagesPerSecond: (batch * 1000) / trainMs,
    evalImagesPerSecond: (batch * 1000) / evalPlain.ms,
    ttaImagesPerSecond: (batch * 1000) / evalTta.ms,
    trainPeakMb: trainMemory.peakAllocated / 2 ** 20,
    evalPeakMb: evalPlain.peakMb,
    loss,
    skippedSteps: skipped,
    graphedSteps: graphed,
    graphReason: graph.reason,
    predictGraphs: model.graphStatus(),
  })}\n`,
);
model.dispose();
