// Data-parallel bench (issue 21): the 2-process c10d/Gloo run (batch B per rank, gradients
// averaged by c10d's Reducer over loopback, cores / 2 threads each) against one process at the same
// total batch 2B with every core, in images/s, same model, size and steps, in the same run. Also
// measured: the 2 processes without gradient sync, which separates the cost of splitting the cores
// between processes from the cost of the all-reduce. One fresh set of processes per measurement;
// the three alternate for PNEUMO_BENCH_ROUNDS rounds (default 2), best kept. PNEUMO_DDP_MODEL
// (default unet_r18), PNEUMO_DDP_SIZE (256), PNEUMO_DDP_BATCH (per rank, 2), PNEUMO_DDP_STEPS (6).
// GPU scaling (NCCL, 2 GPUs) is not measured here: this machine has no GPU.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distributed } from '../dist/index.js';
import { freePort, launchWorkers } from '../dist/distributed/launch.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const worker = join(here, 'ddp.worker.mjs');

function single(args, threads) {
  const r = spawnSync(process.execPath, [worker, ...args], { encoding: 'utf8', env: { ...process.env, PNEUMO_THREADS: String(threads) }, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`ddp.worker.mjs failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

async function pair(args, threads) {
  let out = '';
  await launchWorkers({ nproc: 2, args: [worker, ...args], masterPort: await freePort(), threadsPerWorker: threads, graceSeconds: 30, onStdout: (s) => (out += s), onStderr: () => undefined });
  return JSON.parse(out.trim().split('\n').pop());
}

export async function run({ quick, log }) {
  if (!distributed.distributedInfo().available) {
    log(`ddp: skipped (${distributed.distributedInfo().reason})`);
    return [];
  }
  const model = process.env.PNEUMO_DDP_MODEL ?? 'unet_r18';
  const size = Number(process.env.PNEUMO_DDP_SIZE ?? (quick ? 128 : 256));
  const batch = Number(process.env.PNEUMO_DDP_BATCH ?? 2);
  const steps = Number(process.env.PNEUMO_DDP_STEPS ?? (quick ? 3 : 6));
  const rounds = quick ? 1 : Number(process.env.PNEUMO_BENCH_ROUNDS ?? 2);
  const cores = (await import('node:os')).availableParallelism();
  const perRank = Math.max(1, Math.floor(cores / 2));
  const best = (a, b) => (a === null || b.imagesPerSecond > a.imagesPerSecond ? b : a);
  let one = null;
  let ddp = null;
  let split = null;
  for (let round = 0; round < rounds; round++) {
    one = best(one, single([model, String(size), String(2 * batch), String(steps), '0'], cores));
    ddp = best(ddp, await pair([model, String(size), String(batch), String(steps), '1'], perRank));
    split = best(split, await pair([model, String(size), String(batch), String(steps), '0'], perRank));
  }
  const overhead = 1 - ddp.imagesPerSecond / one.imagesPerSecond;
  const sync = 1 - ddp.imagesPerSecond / split.imagesPerSecond;
  log(
    `${model} @${size}: 2 ranks x batch ${batch} (Gloo) ${ddp.imagesPerSecond.toFixed(2)} images/s vs 1 process x batch ${2 * batch} ` +
      `${one.imagesPerSecond.toFixed(2)} (overhead ${(100 * overhead).toFixed(1)}%); 2 ranks without sync ${split.imagesPerSecond.toFixed(2)} ` +
      `(the all-reduce costs ${(100 * sync).toFixed(1)}%); ${perRank} vs ${cores} threads`,
  );
  return [
    {
      group: 'distributed',
      name: `${model} ${size}px, 2 Gloo ranks x batch ${batch} vs 1 process x batch ${2 * batch}`,
      unit: 'images/s',
      value: ddp.imagesPerSecond,
      baseline: { name: `1 process, batch ${2 * batch}, ${cores} threads`, value: one.imagesPerSecond },
      higherIsBetter: true,
      notes: `overhead ${(100 * overhead).toFixed(1)}% (2 cores shared by 2 processes); without gradient sync ${split.imagesPerSecond.toFixed(2)} images/s, so the c10d all-reduce costs ${(100 * sync).toFixed(1)}%; best of ${rounds} alternating rounds of ${steps} steps; GPU scaling unmeasured (no GPU)`,
    },
  ];
}
