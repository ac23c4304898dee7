// Layout bench: one training step (forward + backward of mean(output^2), batch 2) and one
// inference forward, ms per image, for a model whose weights and inputs are channels-last (the
// default) against the same model contiguous (`channelsLast: false`), same seed, same input,
// same process, same run. The two layouts alternate for PNEUMO_BENCH_ROUNDS rounds (default 2)
// and each keeps its best round, so drift on the machine hits both alike.
// PNEUMO_BENCH_MODELS=unet_ef5,unet_r18 and PNEUMO_BENCH_SIZES=256 narrow a run.
import { Tensor, getThreads, models } from '../dist/index.js';

const FULL = ['unet_r18', 'unet_se50', 'unet_ef3', 'unet_ef5', 'unetpp_ef4', 'deeplab_se50'];
const QUICK = ['unet_r18'];

async function measure(backbone, channelsLast, x, reps) {
  const model = await models.Model.create({ backbone, seed: 1, channelsLast });
  try {
    const ms = () => Number(process.hrtime.bigint()) / 1e6;
    const batch = x.shape[0];
    model.train();
    const step = () => model.gradientStep(x, { lr: 0, statistics: false });
    await step(); // warms the allocator's cache and oneDNN's primitive cache
    let t = ms();
    for (let i = 0; i < reps; i++) await step();
    const trainMs = (ms() - t) / reps / batch;
    model.eval();
    const forward = async () => {
      const out = await model.forward(x);
      out.mask.dispose();
    };
    await forward(); // builds the frozen inference module
    t = ms();
    for (let i = 0; i < reps; i++) await forward();
    return { trainMs, forwardMs: (ms() - t) / reps / batch };
  } finally {
    model.dispose();
  }
}

export async function run({ quick, log }) {
  const chosen = (process.env.PNEUMO_BENCH_MODELS ?? '').split(',').filter(Boolean);
  const names = chosen.length ? chosen : quick ? QUICK : FULL;
  const sizes = process.env.PNEUMO_BENCH_SIZES ? process.env.PNEUMO_BENCH_SIZES.split(',').map(Number) : [256];
  const rounds = quick ? 1 : Number(process.env.PNEUMO_BENCH_ROUNDS ?? 2);
  const reps = quick ? 2 : 3;
  const entries = [];
  for (const size of sizes) {
    const x = await Tensor.randn([2, 3, size, size]);
    for (const name of names) {
      let last = null;
      let plain = null;
      const best = (a, b) => (a === null ? b : { trainMs: Math.min(a.trainMs, b.trainMs), forwardMs: Math.min(a.forwardMs, b.forwardMs) });
      for (let round = 0; round < rounds; round++) {
        plain = best(plain, await measure(name, false, x, reps));
        last = best(last, await measure(name, true, x, reps));
      }
      log(`${name} @${size}: train ${last.trainMs.toFixed(1)} vs ${plain.trainMs.toFixed(1)} ms/img, forward ${last.forwardMs.toFixed(1)} vs ${plain.forwardMs.toFixed(1)} ms/img`);
      const base = (value) => ({ name: 'contiguous (channelsLast: false)', value });
      const notes = `channels-last (default), batch 2, ${getThreads()} threads`;
      entries.push(
        { group: 'layout', name: `${name} ${size}px training step`, unit: 'ms/img', value: last.trainMs, baseline: base(plain.trainMs), higherIsBetter: false, notes },
        { group: 'layout', name: `${name} ${size}px inference`, unit: 'ms/img', value: last.forwardMs, baseline: base(plain.forwardMs), higherIsBetter: false, notes },
      );
    }
    x.dispose();
  }
  return entries;
}
