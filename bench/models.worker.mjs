// One native measurement in a fresh process (so peak RSS is this model's alone), for
// bench/models.bench.mjs and bench/layout.bench.mjs:
// node models.worker.mjs <backbone> <weights.pt> <size> <batch> <reps> [contiguous|channels-last].
// Prints { forwardMs, trainMs, peakRssMb, peakRssEvalMb, threads } per image, like the Python baseline.
import { Tensor, models, getThreads } from '../dist/index.js';

const [backbone, weights, sizeArg, batchArg, repsArg, layout = 'channels-last'] = process.argv.slice(2);
if (layout !== 'contiguous' && layout !== 'channels-last') throw new Error(`Expected "contiguous" or "channels-last" for the layout but received "${layout}"`);
const size = Number(sizeArg);
const batch = Number(batchArg);
const reps = Number(repsArg);
const model = await models.Model.create({ backbone, seed: 1, channelsLast: layout === 'channels-last' });
await model.loadStateDict(weights, { strict: true });
const x = await Tensor.randn([batch, 3, size, size]);
const ms = () => Number(process.hrtime.bigint()) / 1e6;

model.eval();
const forward = async () => {
  const out = await model.forward(x);
  out.mask.dispose();
  out.label?.dispose();
};
await forward(); // builds the frozen inference module
let t = ms();
for (let i = 0; i < reps; i++) await forward();
const forwardMs = (ms() - t) / reps / batch;
const peakRssEvalMb = process.resourceUsage().maxRSS / 1024;

model.train();
const step = () => model.gradientStep(x, { lr: 0, statistics: false });
await step();
t = ms();
for (let i = 0; i < reps; i++) await step();
const trainMs = (ms() - t) / reps / batch;
process.stdout.write(`${JSON.stringify({ forwardMs, trainMs, peakRssMb: process.resourceUsage().maxRSS / 1024, peakRssEvalMb, threads: getThreads() })}\n`);
model.dispose();
