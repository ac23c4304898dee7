/**
 * Local launchers for `pneumo-native train`: `--nproc N` starts N worker processes that form one
 * data-parallel process group (torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
 * MASTER_PORT), and `--folds-parallel N` runs independent folds in up to N processes at once.
 *
 * Failure handling: when a worker exits with an error, the launcher gives the others
 * `graceSeconds` to stop on their own (their next c10d collective fails at once when a peer's
 * sockets close, or after the process group's timeout), then kills them; the launch rejects with a
 * message naming the first rank that failed and its exit code. It never waits forever.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { assertInteger, assertNumber } from '../core/validate.js';

/** A free TCP port on 127.0.0.1 (for MASTER_PORT). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** `args` without the named flags (`--name value`, `--name=value`, or a boolean `--name`). */
export function withoutFlags(args: readonly string[], flags: Record<string, 'value' | 'boolean'>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--([^=]+)(=.*)?$/.exec(a);
    const kind = m ? flags[m[1]!] : undefined;
    if (!m || kind === undefined) {
      out.push(a);
      continue;
    }
    if (m[2] === undefined && kind === 'value' && i + 1 < args.length) i++;
  }
  return out;
}

/** Prefixes each line of a stream's text with `prefix` as it arrives. */
function prefixLines(prefix: string, write: (s: string) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) write(`${prefix}${line}\n`);
  };
}

export interface WorkerFailure {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Thrown when a worker of a launch fails: names the first rank that failed. */
export class LaunchError extends Error {
  constructor(
    message: string,
    readonly failures: WorkerFailure[],
  ) {
    super(message);
    this.name = 'LaunchError';
  }
}

export interface LaunchOptions {
  /** Worker processes (ranks 0 .. nproc - 1). */
  nproc: number;
  /** The command every worker runs: `process.execPath` with these arguments. */
  args: string[];
  /** Extra environment for every worker. */
  env?: NodeJS.ProcessEnv;
  masterAddr?: string;
  /** Default: a free port. */
  masterPort?: number;
  /** After a worker fails, how long the others get to stop on their own before they are killed (default 60 s). */
  graceSeconds?: number;
  /** Intra-op threads per worker (PNEUMO_THREADS) unless the environment sets it: default cores / nproc. */
  threadsPerWorker?: number;
  /** Where rank 0's stdout goes (default: this process's stdout). */
  onStdout?: (text: string) => void;
  /** Where the workers' stderr lines go, prefixed with `[rank k] ` (default: this process's stderr). */
  onStderr?: (text: string) => void;
}

export interface LaunchResult {
  masterPort: number;
  seconds: number;
}

/**
 * Runs `nproc` workers as the ranks of one process group (torchrun's variables) and resolves when
 * all exit 0; rejects with `LaunchError` when one fails (the others stopped, never left hanging).
 */
export async function launchWorkers(options: LaunchOptions): Promise<LaunchResult> {
  assertInteger('options.nproc', options.nproc, 1, 1024);
  const grace = options.graceSeconds ?? 60;
  assertNumber('options.graceSeconds', grace, 0);
  const masterAddr = options.masterAddr ?? '127.0.0.1';
  const masterPort = options.masterPort ?? (await freePort());
  const threads = options.threadsPerWorker ?? Math.max(1, Math.floor(availableParallelism() / options.nproc));
  const stdout = options.onStdout ?? ((s: string) => process.stdout.write(s));
  const stderr = options.onStderr ?? ((s: string) => process.stderr.write(s));
  const started = performance.now();
  const children: ChildProcess[] = [];
  const failures: WorkerFailure[] = [];
  let killTimer: NodeJS.Timeout | undefined;
  const exits: Promise<void>[] = [];
  const forward = (signal: NodeJS.Signals): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  };
  const onSigint = (): void => forward('SIGINT');
  const onSigterm = (): void => forward('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  try {
    for (let rank = 0; rank < options.nproc; rank++) {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ...options.env,
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: String(options.nproc),
        LOCAL_WORLD_SIZE: String(options.nproc),
        MASTER_ADDR: masterAddr,
        MASTER_PORT: String(masterPort),
      };
      if (env.PNEUMO_THREADS === undefined) env.PNEUMO_THREADS = String(threads);
      const child = spawn(process.execPath, options.args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      const prefix = `[rank ${rank}] `;
      child.stdout!.on('data', rank === 0 ? (chunk: Buffer) => stdout(chunk.toString('utf8')) : prefixLines(prefix, stderr));
      child.stderr!.on('data', prefixLines(prefix, stderr));
      exits.push(
        new Promise<void>((done) => {
          child.on('error', (err) => {
            failures.push({ rank, code: null, signal: null });
            stderr(`${prefix}could not start: ${err.message}\n`);
            done();
          });
          child.on('exit', (code, signal) => {
            if (code !== 0) {
              failures.push({ rank, code, signal });
              // The first failure: the others get `grace` seconds to notice (their collectives fail), then are killed.
              if (failures.length === 1 && killTimer === undefined) {
                killTimer = setTimeout(() => forward('SIGKILL'), grace * 1000);
                killTimer.unref();
              }
            }
            done();
          });
        }),
      );
    }
    await Promise.all(exits);
  } finally {
    if (killTimer !== undefined) clearTimeout(killTimer);
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
  }
  if (failures.length > 0) {
    const first = failures[0]!;
    const how = (f: WorkerFailure): string => (f.signal ? `was killed by ${f.signal}` : f.code === null ? 'could not start' : `exited with code ${f.code}`);
    const others = failures.slice(1).map((f) => `rank ${f.rank} ${how(f)}`);
    throw new LaunchError(`distributed training failed: rank ${first.rank} ${how(first)} first${others.length ? `; then ${others.join(', ')}` : ''} (see the [rank k] lines above)`, failures);
  }
  return { masterPort, seconds: (performance.now() - started) / 1000 };
}

export interface ParallelJob {
  /** Shown in the stderr prefix (`[fold 3] `). */
  label: string;
  args: string[];
}

/**
 * Runs independent jobs (one fold each) in up to `parallel` worker processes at a time and
 * resolves with each job's stdout, in job order; rejects naming the first job that failed (after
 * the jobs already running finish: they are independent).
 */
export async function runParallel(jobs: ParallelJob[], parallel: number, options: { env?: NodeJS.ProcessEnv; threadsPerWorker?: number; onStderr?: (text: string) => void } = {}): Promise<string[]> {
  assertInteger('parallel', parallel, 1, 1024);
  const stderr = options.onStderr ?? ((s: string) => process.stderr.write(s));
  const workers = Math.min(parallel, jobs.length);
  const threads = options.threadsPerWorker ?? Math.max(1, Math.floor(availableParallelism() / Math.max(1, workers)));
  const outputs: string[] = new Array<string>(jobs.length).fill('');
  const failed: string[] = [];
  let next = 0;
  const running = new Set<ChildProcess>();
  const forward = (signal: NodeJS.Signals): void => {
    for (const c of running) c.kill(signal);
  };
  const onSigint = (): void => forward('SIGINT');
  const onSigterm = (): void => forward('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  const lane = async (): Promise<void> => {
    while (next < jobs.length && failed.length === 0) {
      const index = next++;
      const job = jobs[index]!;
      const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
      delete env.RANK;
      delete env.WORLD_SIZE;
      delete env.LOCAL_RANK;
      if (env.PNEUMO_THREADS === undefined) env.PNEUMO_THREADS = String(threads);
      await new Promise<void>((done) => {
        const child = spawn(process.execPath, job.args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
        running.add(child);
        const chunks: Buffer[] = [];
        child.stdout!.on('data', (c: Buffer) => chunks.push(c));
        child.stderr!.on('data', prefixLines(`[${job.label}] `, stderr));
        child.on('error', (err) => {
          failed.push(`${job.label} could not start: ${err.message}`);
          running.delete(child);
          done();
        });
        child.on('exit', (code, signal) => {
          running.delete(child);
          outputs[index] = Buffer.concat(chunks).toString('utf8');
          if (code !== 0) failed.push(`${job.label} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}`);
          done();
        });
      });
    }
  };
  try {
    await Promise.all(Array.from({ length: workers }, lane));
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
  }
  if (failed.length > 0) throw new LaunchError(`parallel folds failed: ${failed.join('; ')} (see the [fold k] lines above)`, []);
  return outputs;
}
