// GPU bench (issue: faster than PyTorch on the GPU): train img/s, eval img/s without and with flip
// TTA, and peak GPU memory for unet_se50, albunet34 and unet_ef5 at 1024 px, batch 8, in fp32 and
// mixed precision (bf16 on sm_80+, fp16 + gradient scaler below), natively (bench/gpu.worker.mjs)
// against the same models and weights in eager PyTorch on the same GPU in the same run
// (bench/python/gpu_baseline.py: Python's torch on that machine; fp32, bf16 and fp16+GradScaler
// peers). Each side's model FLOP/s is reported as a share of the GPU's dense tensor peak.
// Skipped with one line without CUDA. PNEUMO_BENCH_MODELS, PNEUMO_BENCH_SIZES, PNEUMO_BENCH_BATCH,
// PNEUMO_BENCH_PRECISIONS (fp32,bf16,fp16) and PNEUMO_BENCH_REPS narrow or widen a run. Last, the
// data wait of the training loop (bench/loader.bench.mjs on CUDA: unet_se50 mixed precision, image
// store, first-place augmentation on the GPU; PNEUMO_BENCH_LOADER=0 skips it).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { models, runtimeReport } from '../dist/index.js';
import { runJson } from './common.mjs';

const runJsonTimed = (cmd, args, env) => runJson(cmd, args, env, 300_000);

const here = fileURLToPath(new URL('.', import.meta.url));
const PYTHON = process.env.PNEUMO_PYTHON ?? 'python3';

/** Dense tensor-core peaks (TFLOP/s) by device name: bf16/fp16, tf32. Unknown devices: no share. */
const PEAKS = [
  [/H200|H100.*SXM|H100 80GB HBM3/i, { half: 989, tf32: 494 }],
  [/H100/i, { half: 756, tf32: 378 }],
  [/A100/i, { half: 312, tf32: 156 }],
  [/L40S/i, { half: 362, tf32: 183 }],
  [/A10\b/i, { half: 125, tf32: 62.5 }],
  [/T4/i, { half: 65, tf32: 8.1 }],
];


export async function run({ tmpDir, quick, log }) {
  const report = await runtimeReport();
  if (!report.cuda.available) {
    log(`gpu: skipped (${report.libtorch.builtWithCuda ? 'no CUDA device visible' : `this addon is built against a CPU LibTorch ${report.libtorch.version}`})`);
    return [];
  }
  if (spawnSync(PYTHON, ['-c', 'import torch; assert torch.cuda.is_available()'], { stdio: 'ignore' }).status !== 0) {
    log(`gpu: skipped (no CUDA-enabled Python torch at ${PYTHON} for the eager baseline; set PNEUMO_PYTHON)`);
    return [];
  }
  const device = report.cuda.devices[0];
  const major = Number(device.computeCapability.split('.')[0]);
  const peak = PEAKS.find(([re]) => re.test(device.name))?.[1] ?? null;
  const names = (process.env.PNEUMO_BENCH_MODELS ?? (quick ? 'unet_se50' : 'unet_se50,albunet34,unet_ef5')).split(',').filter(Boolean);
  const size = Number(process.env.PNEUMO_BENCH_SIZES ?? 1024);
  const batch = Number(process.env.PNEUMO_BENCH_BATCH ?? 8);
  const reps = Number(process.env.PNEUMO_BENCH_REPS ?? (quick ? 5 : 10));
  const precisions = (process.env.PNEUMO_BENCH_PRECISIONS ?? `fp32,${major >= 8 ? 'bf16' : 'fp16'}`).split(',').filter(Boolean);
  log(`gpu: ${device.name} (sm_${device.computeCapability.replace('.', '')}), LibTorch ${report.libtorch.version}; ${names.join(', ')} @${size}, batch ${batch}, ${precisions.join('/')}`);
  const entries = [];
  for (const name of names) {
    const model = await models.Model.create({ backbone: name, seed: 1 });
    const weights = join(tmpDir, `${name}.pt`);
    await model.saveStateDict(weights);
    const { architecture, encoder } = model.spec;
    model.dispose();
    for (const precision of precisions) {
      const ours = runJsonTimed(process.execPath, [join(here, 'gpu.worker.mjs'), name, weights, String(size), String(batch), precision, String(reps)]);
      const py = runJsonTimed(PYTHON, [join(here, 'python', 'gpu_baseline.py'), architecture, encoder, weights, String(size), String(batch), precision, String(reps)]);
      const tflops = (imagesPerSecond, factor) => (py.forwardFlopsPerImage * factor * imagesPerSecond) / 1e12;
      const share = (value) => (peak ? ` (${((100 * value) / (precision === 'fp32' ? peak.tf32 : peak.half)).toFixed(1)}% of peak)` : '');
      const trainOurs = tflops(ours.trainImagesPerSecond, 3);
      const trainPy = tflops(py.trainImagesPerSecond, 3);
      log(
        `${name} ${precision}: train ${ours.trainImagesPerSecond.toFixed(1)} vs ${py.trainImagesPerSecond.toFixed(1)} img/s ` +
          `(${(ours.trainImagesPerSecond / py.trainImagesPerSecond).toFixed(2)}x; ${trainOurs.toFixed(0)}${share(trainOurs)} vs ${trainPy.toFixed(0)}${share(trainPy)} TFLOP/s), ` +
          `eval ${ours.evalImagesPerSecond.toFixed(1)} vs ${py.evalImagesPerSecond.toFixed(1)}, TTA ${ours.ttaImagesPerSecond.toFixed(1)} vs ${py.ttaImagesPerSecond.toFixed(1)}, ` +
          `peak ${ours.trainPeakMb.toFixed(0)} vs ${py.trainPeakMb.toFixed(0)} MB train, ${ours.evalPeakMb.toFixed(0)} vs ${py.evalPeakMb.toFixed(0)} MB eval; ` +
          `CUDA graph ${ours.graphedSteps}/${reps} steps${ours.graphReason ? ` (${ours.graphReason})` : ''}, predict ${ours.predictGraphs.replays} replays${ours.predictGraphs.reason ? ` (${ours.predictGraphs.reason})` : ''}`,
      );
      const baseline = (value) => ({ name: `PyTorch ${py.torch} eager ${precision === 'fp16' ? 'fp16 + GradScaler' : precision}`, value });
      const common = `${architecture} on ${encoder}, ${size}px batch ${batch}, ${precision}, ${reps} reps, ${device.name}`;
      entries.push(
        { group: 'gpu training', name: `${name} ${precision} train step`, unit: 'images/s', value: ours.trainImagesPerSecond, baseline: baseline(py.trainImagesPerSecond), higherIsBetter: true, goal: 1.2, notes: `${common}; ${trainOurs.toFixed(0)} vs ${trainPy.toFixed(0)} TFLOP/s${share(trainOurs)}; loss ${ours.loss.toFixed(4)} vs ${py.loss.toFixed(4)}; CUDA graph ${ours.graphedSteps}/${reps} steps` },
        { group: 'gpu inference', name: `${name} ${precision} eval forward`, unit: 'images/s', value: ours.evalImagesPerSecond, baseline: baseline(py.evalImagesPerSecond), higherIsBetter: true, goal: 1.3, notes: common },
        { group: 'gpu inference', name: `${name} ${precision} flip-TTA predict`, unit: 'images/s', value: ours.ttaImagesPerSecond, baseline: baseline(py.ttaImagesPerSecond), higherIsBetter: true, goal: 1.3, notes: common },
        { group: 'gpu memory', name: `${name} ${precision} training peak`, unit: 'MB', value: ours.trainPeakMb, baseline: baseline(py.trainPeakMb), higherIsBetter: false, goal: 1.0, notes: common },
        { group: 'gpu memory', name: `${name} ${precision} eval peak`, unit: 'MB', value: ours.evalPeakMb, baseline: baseline(py.evalPeakMb), higherIsBetter: false, goal: 1.0, notes: common },
      );
    }
  }
  // The data path's GPU goal: the trainer's loader (image store, first-place augmentation on the
  // GPU, pinned side-stream copies, two batches ahead) feeding unet_se50 in mixed precision.
  if (process.env.PNEUMO_BENCH_LOADER !== '0') {
    const { run: loaderRun } = await import('./loader.bench.mjs');
    const mixed = major >= 8 ? 'bf16' : 'fp16';
    const loaderEntries = await loaderRun({ tmpDir, quick, log, config: { device: 'cuda', backbone: 'unet_se50', precision: mixed, size, batch, steps: quick ? 6 : 12, store: true } });
    entries.push(...loaderEntries.map((e) => ({ ...e, group: 'gpu data path' })));
  }
  return entries;
}
