// Training-step bench: a full training step (forward, combo loss (3,1,4), backward, gradient clip
// 0.1, Adam lr 1e-4 with weight decay 5e-6, zero grad) in images/s for AlbuNet34 (the first
// place's model) on CPU: the native TrainEngine (one native call per step, the fused combo loss)
// against the same model and weights in eager Python PyTorch with the loss as a plain composition
// (bench/python/train_baseline.py, Debian's python3-torch), same batch, size and threads, in the
// same run. One fresh process per measurement; the sides alternate for PNEUMO_BENCH_ROUNDS rounds
// (default 2), best kept. PNEUMO_BENCH_MODELS and PNEUMO_BENCH_SIZES narrow or widen a run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getThreads, models } from '../dist/index.js';
import { runJson } from './common.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const PYTHON = process.env.PNEUMO_PYTHON ?? '/usr/bin/python3';


export async function run({ tmpDir, quick, log }) {
  if (!existsSync(PYTHON) || spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status !== 0) {
    log('train: skipped (no Python torch/torchvision at ' + PYTHON + '; apt-get install python3-torch python3-torchvision)');
    return [];
  }
  const names = (process.env.PNEUMO_BENCH_MODELS ?? 'albunet34').split(',').filter(Boolean);
  const sizes = process.env.PNEUMO_BENCH_SIZES ? process.env.PNEUMO_BENCH_SIZES.split(',').map(Number) : quick ? [256] : [256, 512];
  const batch = Number(process.env.PNEUMO_BENCH_BATCH ?? 4);
  const threads = String(getThreads());
  const env = { OMP_NUM_THREADS: threads, PNEUMO_THREADS: threads };
  const entries = [];
  for (const name of names) {
    const model = await models.Model.create({ backbone: name, seed: 1 });
    const weights = join(tmpDir, `${name}.pt`);
    await model.saveStateDict(weights);
    const { architecture, encoder } = model.spec;
    model.dispose();
    for (const size of sizes) {
      const reps = quick ? 2 : size >= 512 ? 2 : 4;
      const rounds = quick ? 1 : Number(process.env.PNEUMO_BENCH_ROUNDS ?? 2);
      let ours = null;
      let py = null;
      const better = (a, b) => (a === null || b.imagesPerSecond > a.imagesPerSecond ? b : a);
      for (let round = 0; round < rounds; round++) {
        ours = better(ours, runJson(process.execPath, [join(here, 'train.worker.mjs'), name, weights, String(size), String(batch), String(reps)], env));
        py = better(py, runJson(PYTHON, [join(here, 'python', 'train_baseline.py'), architecture, encoder, weights, String(size), String(batch), String(reps), '--threads', threads], env));
      }
      log(
        `${name} @${size} batch ${batch}: ${ours.imagesPerSecond.toFixed(2)} vs ${py.imagesPerSecond.toFixed(2)} images/s ` +
          `(${ours.msPerStep.toFixed(0)} vs ${py.msPerStep.toFixed(0)} ms/step, ${(ours.imagesPerSecond / py.imagesPerSecond).toFixed(2)}x), ` +
          `peak RSS ${ours.peakRssMb.toFixed(0)} vs ${py.peakRssMb.toFixed(0)} MB, ${ours.threads} threads`,
      );
      entries.push({
        group: 'training',
        name: `${name} ${size}px training step (batch ${batch})`,
        unit: 'images/s',
        value: ours.imagesPerSecond,
        baseline: { name: 'PyTorch eager + composed combo loss (python3-torch)', value: py.imagesPerSecond },
        higherIsBetter: true,
        goal: 1.1,
        notes: `${architecture} on ${encoder}; combo (3,1,4), clip 0.1, Adam; ${ours.threads} threads; best of ${rounds} alternating rounds of ${reps} steps`,
      });
    }
  }
  return entries;
}
