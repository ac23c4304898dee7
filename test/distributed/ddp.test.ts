/**
 * Data-parallel training over c10d (Gloo on loopback), at the engine level: 2 ranks x batch B give
 * the weights of 1 process at batch 2B (as two accumulated halves: the same per-rank BatchNorm and
 * batch-Dice statistics, the gradients averaged) after K steps, within the README's tolerance;
 * also across a frozen-then-thawed encoder (the Reducer rebuilt). The ranks are started with
 * torchrun's environment by `launchWorkers`.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getThreads, setThreads } from '../../src/core/runtime.js';
import { Tensor } from '../../src/core/tensor.js';
import { ProcessGroup, distributedInfo } from '../../src/distributed/index.js';
import { LaunchError, freePort, launchWorkers } from '../../src/distributed/launch.js';
import { Model } from '../../src/models/model.js';
import { TrainEngine } from '../../src/training/engine.js';
import { repoRoot } from '../helpers/cli.js';
// @ts-expect-error a plain ESM helper shared with the worker script
import { batchFor } from './ddp-data.mjs';

const worker = join(repoRoot, 'test', 'distributed', 'ddp-worker.mjs');
const STEPS = 3;
const BATCH = 2;
/** The README's stated tolerance: max |w_ddp - w_ref| over every parameter element. */
const TOLERANCE = 1e-5;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pn-ddp-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The single-process reference: batch 2B as two accumulated halves of B, on one thread as each rank. */
async function reference(mode: 'plain' | 'freeze'): Promise<Map<string, Float32Array>> {
  const threads = getThreads();
  setThreads(1);
  try {
    return await referenceRun(mode);
  } finally {
    setThreads(threads);
  }
}

async function referenceRun(mode: 'plain' | 'freeze'): Promise<Map<string, Float32Array>> {
  const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 100, device: 'cpu' });
  const engine = TrainEngine.create(model, {
    optimizer: { algorithm: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 1e-4 },
    loss: [{ kind: 'combo', weight: 1, options: { bceWeight: 3, diceWeight: 1, focalWeight: 4, perImageDice: false } }],
    gradClip: 1,
    accumulation: 2,
  });
  for (let s = 0; s < STEPS; s++) {
    if (mode === 'freeze') model.freezeEncoder(s === 0);
    for (let half = 0; half < 2; half++) {
      const { images, masks } = batchFor(s, half * BATCH, BATCH) as { images: Float32Array; masks: Float32Array };
      const x = Tensor.from(images, [BATCH, 3, 64, 64]);
      const y = Tensor.from(masks, [BATCH, 1, 64, 64]);
      const r = await engine.step(x, y);
      expect(r.stepped).toBe(half === 1);
      x.dispose();
      y.dispose();
    }
  }
  const out = new Map<string, Float32Array>();
  for (const [name, t] of await model.stateDict()) {
    if (!/running_mean|running_var|num_batches_tracked/.test(name)) out.set(name, Float32Array.from(await t.data('float32')));
    t.dispose();
  }
  engine.dispose();
  model.dispose();
  return out;
}

async function compare(mode: 'plain' | 'freeze'): Promise<number> {
  const out = join(root, `${mode}.json`);
  await launchWorkers({ nproc: 2, args: [worker, out, String(STEPS), String(BATCH), mode], graceSeconds: 60, threadsPerWorker: 1, onStderr: (s) => process.stderr.write(s) });
  const ddp = JSON.parse(await readFile(out, 'utf8')) as Record<string, number[]>;
  const ref = await reference(mode);
  expect(Object.keys(ddp).sort()).toEqual([...ref.keys()].sort());
  let maxDiff = 0;
  let moved = 0;
  const initial = await Model.create({ backbone: 'tiny_unet_r18', seed: 100, device: 'cpu' });
  const start = await initial.stateDict();
  for (const [name, w] of ref) {
    const d = ddp[name]!;
    const w0 = await start.get(name)!.data('float32');
    expect(d.length).toBe(w.length);
    for (let i = 0; i < w.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(d[i]! - w[i]!));
      moved = Math.max(moved, Math.abs(w[i]! - w0[i]!));
    }
  }
  for (const t of start.values()) t.dispose();
  initial.dispose();
  // The training moved the weights far more than the tolerance: the comparison can fail.
  expect(moved).toBeGreaterThan(100 * TOLERANCE);
  return maxDiff;
}

describe.runIf(distributedInfo().available)('data-parallel TrainEngine over Gloo', () => {
  it('2 ranks x batch B match 1 process x batch 2B (accumulated halves) after K steps', async () => {
    const diff = await compare('plain');
    process.stderr.write(`max |w_ddp - w_ref| = ${diff.toExponential(2)}\n`);
    expect(diff).toBeLessThan(TOLERANCE);
  }, 240_000);

  it('rebuilds the gradient buckets when the frozen encoder thaws, still matching', async () => {
    const diff = await compare('freeze');
    process.stderr.write(`max |w_ddp - w_ref| = ${diff.toExponential(2)} (encoder thawed after step 0)\n`);
    expect(diff).toBeLessThan(TOLERANCE);
  }, 240_000);

  it('a rendezvous nobody joins fails with a clear error within its timeout (never a hang)', async () => {
    const port = await freePort();
    const started = performance.now();
    await expect(ProcessGroup.init({ rank: 1, worldSize: 2, localRank: 1, masterAddr: '127.0.0.1', masterPort: port, timeoutSeconds: 2 })).rejects.toThrow(/could not join the process group as rank 1 of 2/);
    expect((performance.now() - started) / 1000).toBeLessThan(60);
  }, 120_000);

  it('a worker that fails makes the launch reject naming it', async () => {
    await expect(launchWorkers({ nproc: 2, args: ['-e', 'process.exit(Number(process.env.RANK) === 1 ? 3 : 0)'], graceSeconds: 5 })).rejects.toThrow(LaunchError);
    await expect(launchWorkers({ nproc: 2, args: ['-e', 'process.exit(Number(process.env.RANK) === 1 ? 3 : 0)'], graceSeconds: 5 })).rejects.toThrow(/rank 1 exited with code 3/);
  }, 60_000);
});

describe.runIf(!distributedInfo().available)('without c10d', () => {
  it('says why distributed training is unavailable', async () => {
    await expect(ProcessGroup.init({ rank: 0, worldSize: 1, localRank: 0, masterAddr: '127.0.0.1', masterPort: 29500 })).rejects.toThrow(/distributed training unavailable/);
  });
});
