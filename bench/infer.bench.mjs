// Inference bench: images/s of flip-TTA prediction (the first place's inference: (f(x) +
// flip(f(flip(x)))) / 2) at 1024 px on CPU, pneumo-native's Model.predict (one batched forward
// over [x, flip(x)] through the frozen, conv-BN-folded module) against the same architecture and
// weights in eager Python PyTorch (bench/python/infer_baseline.py, Debian's python3-torch), on the
// same deterministic input, one fresh process per measurement, sides alternating, best kept. The
// two sides' mean probabilities must agree, or the bench fails.
// PNEUMO_BENCH_MODELS=unet_r18 and PNEUMO_BENCH_SIZES=512 narrow a run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getThreads, models } from '../dist/index.js';
import { runJson } from './common.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const PYTHON = process.env.PNEUMO_PYTHON ?? '/usr/bin/python3';


export async function run({ tmpDir, quick, log }) {
  if (!existsSync(PYTHON) || spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status !== 0) {
    log(`infer: skipped (no Python torch at ${PYTHON}; apt-get install python3-torch)`);
    return [];
  }
  const names = (process.env.PNEUMO_BENCH_MODELS ?? '').split(',').filter(Boolean);
  const backbones = names.length ? names : quick ? ['unet_r18'] : ['unet_r18', 'albunet34'];
  const sizes = process.env.PNEUMO_BENCH_SIZES ? process.env.PNEUMO_BENCH_SIZES.split(',').map(Number) : quick ? [512] : [1024];
  const batch = 1;
  const entries = [];
  for (const name of backbones) {
    const model = await models.Model.create({ backbone: name, seed: 1 });
    const weights = join(tmpDir, `${name}.pt`);
    await model.saveStateDict(weights);
    const { architecture, encoder } = model.spec;
    model.dispose();
    for (const size of sizes) {
      const reps = quick ? 1 : 2;
      const threads = String(getThreads());
      const env = { OMP_NUM_THREADS: threads, PNEUMO_THREADS: threads };
      const rounds = quick ? 1 : Number(process.env.PNEUMO_BENCH_ROUNDS ?? 2);
      let ours = null;
      let py = null;
      for (let round = 0; round < rounds; round++) {
        const o = runJson(process.execPath, [join(here, 'infer.worker.mjs'), name, weights, String(size), String(batch), String(reps)], env);
        const p = runJson(PYTHON, [join(here, 'python', 'infer_baseline.py'), architecture, encoder, weights, String(size), String(batch), String(reps), '--threads', threads], env);
        if (!ours || o.imagesPerSecond > ours.imagesPerSecond) ours = o;
        if (!py || p.imagesPerSecond > py.imagesPerSecond) py = p;
      }
      const diff = Math.abs(ours.meanProbability - py.meanProbability);
      const checksumDiff = Math.abs(ours.checksum - py.checksum) / Math.max(1, Math.abs(py.checksum));
      if (!(diff < 1e-3) || !(checksumDiff < 1e-3)) {
        throw new Error(`infer bench: ${name} @${size}: outputs differ (mean probability ${ours.meanProbability} vs ${py.meanProbability}, weighted checksum ${ours.checksum} vs ${py.checksum})`);
      }
      log(`${name} @${size} flip TTA: ${ours.imagesPerSecond.toFixed(3)} vs ${py.imagesPerSecond.toFixed(3)} images/s (${ours.threads} threads; mean probability differs by ${diff.toExponential(1)})`);
      entries.push({
        group: 'infer',
        name: `${name} ${size}px flip-TTA prediction`,
        unit: 'images/s',
        value: ours.imagesPerSecond,
        baseline: { name: 'PyTorch eager (python3-torch), same weights', value: py.imagesPerSecond },
        higherIsBetter: true,
        goal: 1.2,
        notes: `${architecture} on ${encoder}, batch ${batch} (2 with the flip), ${ours.threads} threads; outputs agree (mean probability within ${diff.toExponential(1)})`,
      });
    }
  }
  return entries;
}
