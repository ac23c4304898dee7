// bf16 on the CPU (issue 18): the training step of bench/train.worker.mjs (AlbuNet34, combo loss
// (3,1,4), clip 0.1, Adam) in bf16 autocast against this project's own fp32 step, and against eager
// PyTorch with the same autocast (torch.autocast('cpu', dtype=torch.bfloat16), bench/python/
// train_baseline.py --bf16), same weights, batch, size and threads, in the same run. The CPU and its
// bf16 flags are named in every entry: on a CPU with AMX (amx_bf16) the goals are bf16 >= 2x our
// fp32 and >= 1.1x eager bf16; without AMX (AVX512-BF16 only, or neither) bf16 is emulated or
// converted and is expected to be slower than fp32, which the entries then show.
// One fresh process per measurement; the variants alternate for PNEUMO_BENCH_ROUNDS rounds
// (default 2), best kept. PNEUMO_BENCH_SIZES (default 256) and PNEUMO_BENCH_BATCH (default 4).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getThreads, models } from '../dist/index.js';
import { cpuBf16Support } from '../dist/models/precision.js';
import { runJson } from './common.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const PYTHON = process.env.PNEUMO_PYTHON ?? '/usr/bin/python3';


export async function run({ tmpDir, quick, log }) {
  if (!existsSync(PYTHON) || spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status !== 0) {
    log('bf16: skipped (no Python torch/torchvision at ' + PYTHON + '; apt-get install python3-torch python3-torchvision)');
    return [];
  }
  const support = cpuBf16Support();
  const cpu = `${cpus()[0]?.model ?? 'unknown CPU'} (amx_bf16: ${support.amx ? 'yes' : 'no'}, avx512_bf16: ${support.avx512bf16 ? 'yes' : 'no'})`;
  log(`CPU: ${cpu}`);
  const name = 'albunet34';
  const sizes = process.env.PNEUMO_BENCH_SIZES ? process.env.PNEUMO_BENCH_SIZES.split(',').map(Number) : [256];
  const batch = Number(process.env.PNEUMO_BENCH_BATCH ?? 4);
  const threads = String(getThreads());
  const env = { OMP_NUM_THREADS: threads, PNEUMO_THREADS: threads };
  const model = await models.Model.create({ backbone: name, seed: 1 });
  const weights = join(tmpDir, `${name}.pt`);
  await model.saveStateDict(weights);
  const { architecture, encoder } = model.spec;
  model.dispose();
  const entries = [];
  for (const size of sizes) {
    const reps = quick ? 2 : 3;
    const rounds = quick ? 1 : Number(process.env.PNEUMO_BENCH_ROUNDS ?? 2);
    const best = { ours32: null, ours16: null, py32: null, py16: null };
    const keep = (k, r) => (best[k] = best[k] === null || r.imagesPerSecond > best[k].imagesPerSecond ? r : best[k]);
    for (let round = 0; round < rounds; round++) {
      keep('ours32', runJson(process.execPath, [join(here, 'train.worker.mjs'), name, weights, String(size), String(batch), String(reps), 'fp32'], env));
      keep('ours16', runJson(process.execPath, [join(here, 'train.worker.mjs'), name, weights, String(size), String(batch), String(reps), 'bf16'], env));
      const py = [join(here, 'python', 'train_baseline.py'), architecture, encoder, weights, String(size), String(batch), String(reps), '--threads', threads];
      keep('py32', runJson(PYTHON, py, env));
      keep('py16', runJson(PYTHON, [...py, '--bf16'], env));
    }
    const { ours32, ours16, py32, py16 } = best;
    log(
      `${name} @${size} batch ${batch}: bf16 ${ours16.imagesPerSecond.toFixed(2)}, fp32 ${ours32.imagesPerSecond.toFixed(2)} images/s ` +
        `(${(ours16.imagesPerSecond / ours32.imagesPerSecond).toFixed(2)}x); eager bf16 ${py16.imagesPerSecond.toFixed(2)}, eager fp32 ${py32.imagesPerSecond.toFixed(2)} ` +
        `(ours bf16 / eager bf16 ${(ours16.imagesPerSecond / py16.imagesPerSecond).toFixed(2)}x)`,
    );
    const notes = `${cpu}; ${architecture} on ${encoder}; combo (3,1,4), clip 0.1, Adam; ${threads} threads; best of ${rounds} alternating rounds of ${reps} steps`;
    entries.push(
      {
        group: 'bf16 (CPU)',
        name: `${name} ${size}px training step, bf16 over our fp32 (batch ${batch})`,
        unit: 'images/s',
        value: ours16.imagesPerSecond,
        baseline: { name: 'pneumo-native fp32, same run', value: ours32.imagesPerSecond },
        higherIsBetter: true,
        ...(support.amx ? { goal: 2 } : {}),
        notes,
      },
      {
        group: 'bf16 (CPU)',
        name: `${name} ${size}px training step, bf16 (batch ${batch})`,
        unit: 'images/s',
        value: ours16.imagesPerSecond,
        baseline: { name: "PyTorch eager, torch.autocast('cpu', bfloat16) (python3-torch)", value: py16.imagesPerSecond },
        higherIsBetter: true,
        ...(support.amx ? { goal: 1.1 } : {}),
        notes: `${notes}; eager fp32 ${py32.imagesPerSecond.toFixed(2)} images/s`,
      },
    );
  }
  return entries;
}
