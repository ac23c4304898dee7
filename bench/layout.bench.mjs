// Layout bench: one training step (forward + backward of mean(output^2), batch 2) and one
// inference forward, ms per image, for a model whose weights and inputs are channels-last (the
// default) against the same weights contiguous (`channelsLast: false`), each measured by
// bench/models.worker.mjs in a fresh process, in the same run. The two layouts alternate for
// PNEUMO_BENCH_ROUNDS rounds (default 2) and each keeps its best round, so drift on the machine
// hits both alike. PNEUMO_BENCH_MODELS=unet_ef5,unet_r18 and PNEUMO_BENCH_SIZES=256 narrow a run.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getThreads, models } from '../dist/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const FULL = ['unet_r18', 'unet_se50', 'unet_ef3', 'unet_ef5', 'unetpp_ef4', 'deeplab_se50'];
const QUICK = ['unet_r18'];

function measure(backbone, weights, size, reps, layout) {
  const threads = String(getThreads());
  const args = [join(here, 'models.worker.mjs'), backbone, weights, String(size), '2', String(reps), layout];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: threads, PNEUMO_THREADS: threads } });
  if (r.status !== 0) throw new Error(`models.worker.mjs ${args.slice(1).join(' ')} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

export async function run({ tmpDir, quick, log }) {
  const chosen = (process.env.PNEUMO_BENCH_MODELS ?? '').split(',').filter(Boolean);
  const names = chosen.length ? chosen : quick ? QUICK : FULL;
  const sizes = process.env.PNEUMO_BENCH_SIZES ? process.env.PNEUMO_BENCH_SIZES.split(',').map(Number) : [256];
  const rounds = quick ? 1 : Number(process.env.PNEUMO_BENCH_ROUNDS ?? 2);
  const reps = quick ? 2 : 3;
  const best = (a, b) => (a === null ? b : { trainMs: Math.min(a.trainMs, b.trainMs), forwardMs: Math.min(a.forwardMs, b.forwardMs) });
  const entries = [];
  for (const name of names) {
    const model = await models.Model.create({ backbone: name, seed: 1 });
    const weights = join(tmpDir, `layout-${name}.pt`);
    await model.saveStateDict(weights);
    model.dispose();
    for (const size of sizes) {
      let last = null;
      let plain = null;
      for (let round = 0; round < rounds; round++) {
        plain = best(plain, measure(name, weights, size, reps, 'contiguous'));
        last = best(last, measure(name, weights, size, reps, 'channels-last'));
      }
      log(`${name} @${size}: train ${last.trainMs.toFixed(1)} vs ${plain.trainMs.toFixed(1)} ms/img, forward ${last.forwardMs.toFixed(1)} vs ${plain.forwardMs.toFixed(1)} ms/img`);
      const base = (value) => ({ name: 'contiguous (channelsLast: false)', value });
      const notes = `channels-last (default), batch 2, ${getThreads()} threads`;
      entries.push(
        { group: 'layout', name: `${name} ${size}px training step`, unit: 'ms/img', value: last.trainMs, baseline: base(plain.trainMs), higherIsBetter: false, notes },
        { group: 'layout', name: `${name} ${size}px inference`, unit: 'ms/img', value: last.forwardMs, baseline: base(plain.forwardMs), higherIsBetter: false, notes },
      );
    }
  }
  return entries;
}
