// Models bench: forward (inference) and forward+backward (training step) ms per image for the
// zoo's architectures at 256 and 512 px on CPU, beside the same architecture in eager Python
// PyTorch (bench/python/models_baseline.py, Debian's python3-torch) with the same weights
// (exported from the native model as a torch.save state dict), measured in the same run, one
// fresh process per measurement on each side so that peak RSS is the model's own.
//
// Native inference runs the frozen, conv-BN-folded TorchScript module (Model.forward in eval
// mode); Python runs model.eval() under torch.no_grad(). Training is one forward + backward of
// mean(output^2) with gradients cleared, batch 2 (BatchNorm needs it for DeepLabV3), threads
// equal on both sides. The sides alternate for PNEUMO_BENCH_ROUNDS rounds (default 2), best kept.
// PNEUMO_BENCH_MODELS=unet_r18,albunet34 and PNEUMO_BENCH_SIZES=256 narrow a run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getThreads, models } from '../dist/index.js';
import { runJson } from './common.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const PYTHON = process.env.PNEUMO_PYTHON ?? '/usr/bin/python3';
const FULL = ['unet_r18', 'albunet34', 'unet_r50', 'scseunet_se50', 'unet_se50', 'unet_se101', 'unet_ef3', 'unet_ef5', 'unetpp_ef4', 'deeplab_se50'];
const QUICK = ['unet_r18', 'albunet34'];


export async function run({ tmpDir, quick, log }) {
  if (!existsSync(PYTHON) || spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status !== 0) {
    log('models: skipped (no Python torch/torchvision at ' + PYTHON + '; apt-get install python3-torch python3-torchvision)');
    return [];
  }
  const backbones = (process.env.PNEUMO_BENCH_MODELS ?? '').split(',').filter(Boolean);
  const names = backbones.length ? backbones : quick ? QUICK : FULL;
  const sizes = process.env.PNEUMO_BENCH_SIZES ? process.env.PNEUMO_BENCH_SIZES.split(',').map(Number) : quick ? [256] : [256, 512];
  const batch = 2;
  const entries = [];
  for (const name of names) {
    const model = await models.Model.create({ backbone: name, seed: 1 });
    const weights = join(tmpDir, `${name}.pt`);
    await model.saveStateDict(weights);
    const { architecture, encoder } = model.spec;
    const params = model.parameterCount().total;
    model.dispose();
    for (const size of sizes) {
      const reps = quick ? 2 : size >= 512 ? 2 : 3;
      const threads = String(getThreads());
      const env = { OMP_NUM_THREADS: threads, PNEUMO_THREADS: threads };
      // Alternate the two sides (other work on the machine drifts) and keep each side's best round.
      const rounds = quick ? 1 : Number(process.env.PNEUMO_BENCH_ROUNDS ?? 2);
      let ours = null;
      let py = null;
      const best = (a, b) => (a === null ? b : Object.fromEntries(Object.keys(b).map((k) => [k, Math.min(a[k], b[k])])));
      for (let round = 0; round < rounds; round++) {
        ours = best(ours, runJson(process.execPath, [join(here, 'models.worker.mjs'), name, weights, String(size), String(batch), String(reps)], env));
        py = best(py, runJson(PYTHON, [join(here, 'python', 'models_baseline.py'), 'bench', architecture, encoder, weights, String(size), String(batch), String(reps), '--threads', threads], env));
      }
      log(
        `${name} @${size}: forward ${ours.forwardMs.toFixed(1)} vs ${py.forwardMs.toFixed(1)} ms/img, train ${ours.trainMs.toFixed(1)} vs ${py.trainMs.toFixed(1)} ms/img, ` +
          `peak RSS ${ours.peakRssMb.toFixed(0)} vs ${py.peakRssMb.toFixed(0)} MB (${(params / 1e6).toFixed(1)}M params, ${ours.threads} threads)`,
      );
      const base = (value) => ({ name: 'PyTorch eager (python3-torch)', value });
      const notes = `${architecture} on ${encoder}, batch ${batch}, ${ours.threads} threads`;
      entries.push(
        { group: 'models', name: `${name} ${size}px inference`, unit: 'ms/img', value: ours.forwardMs, baseline: base(py.forwardMs), higherIsBetter: false, goal: 1.1, notes },
        { group: 'models', name: `${name} ${size}px training step`, unit: 'ms/img', value: ours.trainMs, baseline: base(py.trainMs), higherIsBetter: false, goal: 1.0, notes },
        { group: 'models', name: `${name} ${size}px peak RSS (train)`, unit: 'MB', value: ours.peakRssMb, baseline: base(py.peakRssMb), higherIsBetter: false, notes: 'whole process: runtime + weights + activations' },
      );
    }
  }
  return entries;
}
