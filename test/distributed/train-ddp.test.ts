/**
 * `pneumo-native train` data-parallel over c10d (Gloo on loopback) through the compiled CLI, on a
 * tiny prepared synthetic dataset (tiny_unet_r18 at 64 px): ranks started with torchrun's
 * environment join one group and rank 0 alone writes; `--nproc 2` resumes exactly; a killed rank
 * ends the run with an error within the timeout; `--folds-parallel 2` gives the per-fold results
 * of training the folds one after another.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { distributedInfo } from '../../src/distributed/index.js';
import { freePort } from '../../src/distributed/launch.js';
import { cliPath, parseJson, repoRoot, runCli } from '../helpers/cli.js';
import type { CliResult } from '../helpers/cli.js';
import { makeTrainFixture } from '../training/train-fixture.js';
import type { TrainFixture } from '../training/train-fixture.js';

let fixture: TrainFixture;
beforeAll(async () => {
  fixture = await makeTrainFixture();
}, 120_000);
afterAll(async () => {
  if (fixture) await rm(fixture.root, { recursive: true, force: true });
});

/** One thread per process everywhere, so that runs in different process layouts compute alike. */
const ENV = { PNEUMO_THREADS: '1' };

function trainArgs(name: string, epochs: number, extra: string[] = [], output = join(fixture.root, 'runs')): string[] {
  return [
    'train',
    '--data-dir', fixture.data,
    '--backbone', 'tiny_unet_r18',
    '--img-size', '64',
    '--epochs', String(epochs),
    '--batch-size', '2',
    '--lr', '1e-3',
    '--seed', '5',
    '--device', 'cpu',
    '--name', name,
    '--output', output,
    '--training.earlyStopping', '0',
    '--checkpoints.topK', '1',
    '--augment.preset', 'none',
    '--dist-timeout', '30',
    ...extra,
  ];
}

function runDir(name: string, fold = 0, output = join(fixture.root, 'runs')): string {
  return join(output, name, 'part0', `fold${fold}`);
}

/** metrics.jsonl without the wall-clock figures. */
function metricsOf(dir: string): unknown[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const r = JSON.parse(line) as Record<string, unknown> & { validation: Record<string, unknown> | null };
      const { seconds: _s, imagesPerSecond: _i, dataWait: _d, ...rest } = r;
      void [_s, _i, _d];
      if (rest.validation) {
        const { seconds: _vs, ...v } = rest.validation;
        void _vs;
        rest.validation = v;
      }
      return rest;
    });
}

interface Rank {
  done: Promise<CliResult>;
  kill(signal: NodeJS.Signals): void;
  stderr(): string;
}

/** Starts one rank of a torchrun-style launch (the environment set by hand, as torchrun or srun would). */
function startRank(args: string[], env: NodeJS.ProcessEnv): Rank {
  const child = spawn(process.execPath, [cliPath, ...args], { cwd: repoRoot, env: { ...process.env, ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? -1 : -2), stdout, stderr }));
  });
  return { done, kill: (s) => child.kill(s), stderr: () => stderr };
}

function torchrunEnv(rank: number, port: number): NodeJS.ProcessEnv {
  return { RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
}

describe.runIf(distributedInfo().available)('train, data-parallel over Gloo', () => {
  it('ranks started with torchrun variables join one group, and rank 0 alone writes', async () => {
    const port = await freePort();
    // Rank 1 is pointed at another output folder: it must never be created.
    const elsewhere = join(fixture.root, 'rank1-output');
    const ranks = [startRank(trainArgs('tr', 1, ['--fold', '0', '--json']), torchrunEnv(0, port)), startRank(trainArgs('tr', 1, ['--fold', '0', '--json'], elsewhere), torchrunEnv(1, port))];
    const [r0, r1] = await Promise.all(ranks.map((r) => r.done));
    expect(r0!.code, r0!.stderr).toBe(0);
    expect(r1!.code, r1!.stderr).toBe(0);
    const result = parseJson<{ worldSize: number; folds: { fold: number; epochsRun: number; best: { score: number } | null }[] }>(r0!);
    expect(result.worldSize).toBe(2);
    expect(result.folds[0]!.epochsRun).toBe(1);
    expect(r1!.stdout).toBe('');
    expect(existsSync(elsewhere)).toBe(false);
    const files = readdirSync(runDir('tr')).sort();
    for (const f of ['last.ckpt', 'best.ckpt', 'train.log', 'metrics.jsonl', 'curves.png', 'config.json', 'summary.csv']) expect(files).toContain(f);
    // The log is written once (by rank 0), and the epoch covers the images of both ranks.
    const log = readFileSync(join(runDir('tr'), 'train.log'), 'utf8');
    expect(log.match(/epoch 0:/g)).toHaveLength(1);
    const [epoch] = metricsOf(runDir('tr')) as { images: number; steps: number }[];
    expect(epoch!.images).toBe(epoch!.steps * 2 * 2);
  }, 300_000);

  it('--nproc 2 --resume continues a 2-rank run exactly', async () => {
    const full = await runCli(trainArgs('full', 2, ['--fold', '0', '--nproc', '2']), { env: ENV, timeoutMs: 280_000 });
    expect(full.code, full.stderr).toBe(0);
    const first = await runCli(trainArgs('split', 1, ['--fold', '0', '--nproc', '2']), { env: ENV, timeoutMs: 280_000 });
    expect(first.code, first.stderr).toBe(0);
    expect(metricsOf(runDir('split'))).toHaveLength(1);
    const resumed = await runCli(trainArgs('split', 2, ['--fold', '0', '--nproc', '2', '--resume']), { env: ENV, timeoutMs: 280_000 });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resuming/);
    expect(metricsOf(runDir('split'))).toEqual(metricsOf(runDir('full')));
  }, 600_000);

  it('--sync-bn normalises over both ranks: the log counts the layers and the losses differ from per-rank BatchNorm', async () => {
    const plain = await runCli(trainArgs('bn', 1, ['--fold', '0', '--nproc', '2']), { env: ENV, timeoutMs: 280_000 });
    expect(plain.code, plain.stderr).toBe(0);
    const synced = await runCli(trainArgs('syncbn', 1, ['--fold', '0', '--nproc', '2', '--sync-bn']), { env: ENV, timeoutMs: 280_000 });
    expect(synced.code, synced.stderr).toBe(0);
    const log = readFileSync(join(runDir('syncbn'), 'train.log'), 'utf8');
    const layers = Number(/SyncBatchNorm: (\d+) BatchNorm layers normalise over the global batch of 2 ranks/.exec(log)?.[1] ?? 0);
    expect(layers, log).toBeGreaterThan(0);
    expect(readFileSync(join(runDir('bn'), 'train.log'), 'utf8')).not.toMatch(/SyncBatchNorm/);
    // The recipe key is the same switch as the flag.
    expect(JSON.parse(readFileSync(join(runDir('syncbn'), 'config.json'), 'utf8')).training.syncBatchNorm).toBe(true);
    const [a] = metricsOf(runDir('bn')) as { loss: number }[];
    const [b] = metricsOf(runDir('syncbn')) as { loss: number }[];
    expect(Number.isFinite(b!.loss)).toBe(true);
    expect(b!.loss).not.toBe(a!.loss);
  }, 600_000);

  it('a killed rank ends the run with an error within the timeout, never a hang', async () => {
    const port = await freePort();
    const args = trainArgs('killed', 200, ['--fold', '0']);
    const r0 = startRank(args, torchrunEnv(0, port));
    const r1 = startRank(args, torchrunEnv(1, port));
    // Wait until rank 0 is training (its fold banner is logged just before the first step).
    const began = Date.now();
    while (!/fold 0: \d+ training images/.test(r0.stderr())) {
      if (Date.now() - began > 120_000) throw new Error(`rank 0 never started training:\n${r0.stderr()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 3000));
    r1.kill('SIGKILL');
    const killedAt = Date.now();
    const result = await r0.done;
    const seconds = (Date.now() - killedAt) / 1000;
    process.stderr.write(`rank 0 stopped ${seconds.toFixed(1)} s after rank 1 was killed: ${result.stderr.trim().split('\n').at(-1)}\n`);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/rank 0: .*failed on rank 0 of 2/);
    // The timeout is 30 s (--dist-timeout); a dead peer's closed sockets usually fail the next collective at once.
    expect(seconds).toBeLessThan(30 + 30);
    await r1.done;
  }, 300_000);

  it('--folds-parallel 2 gives the per-fold results of the folds trained one after another', async () => {
    const sequential = await runCli(trainArgs('seq', 1, ['--fold', '0', '--fold', '1', '--json']), { env: ENV, timeoutMs: 280_000 });
    expect(sequential.code, sequential.stderr).toBe(0);
    const parallel = await runCli(trainArgs('par', 1, ['--fold', '0', '--fold', '1', '--folds-parallel', '2', '--json']), { env: ENV, timeoutMs: 280_000 });
    expect(parallel.code, parallel.stderr).toBe(0);
    const seq = parseJson<{ folds: { fold: number; best: { score: number; epoch: number } | null }[] }>(sequential);
    const par = parseJson<{ folds: { fold: number; best: { score: number; epoch: number } | null }[] }>(parallel);
    expect(par.folds.map((f) => f.fold)).toEqual([0, 1]);
    expect(par.folds.map((f) => [f.best?.epoch, f.best?.score])).toEqual(seq.folds.map((f) => [f.best?.epoch, f.best?.score]));
    for (const fold of [0, 1]) expect(metricsOf(runDir('par', fold))).toEqual(metricsOf(runDir('seq', fold)));
    expect(parallel.stderr).toMatch(/\[fold 1\]/);
  }, 600_000);
});
