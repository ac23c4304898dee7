// Helpers shared by the benchmarks that run measurements in fresh processes.
import { spawnSync } from 'node:child_process';

/**
 * Runs `cmd args` with `env` added and returns the JSON of its last stdout line; a non-zero exit
 * (or a signal, or passing `timeoutMs`) throws with the end of its stderr.
 */
export function runJson(cmd, args, env = {}, timeoutMs = undefined) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024, ...(timeoutMs ? { timeout: timeoutMs } : {}) });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr ?? '').slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}
