/** Python PyTorch (Debian's python3-torch at /usr/bin/python3) for interop tests. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const PYTHON = process.env.PNEUMO_PYTHON ?? '/usr/bin/python3';
export const BASELINE = fileURLToPath(new URL('../../bench/python/models_baseline.py', import.meta.url));

/** Whether Python with torch and torchvision is installed (apt-get install python3-torch python3-torchvision). */
export const hasPythonTorch: boolean =
  existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status === 0;

/** Runs Python code (or a script with arguments) and returns stdout; throws with stderr on failure. */
export function python(args: string[], input?: string): string {
  const r = spawnSync(PYTHON, args, { encoding: 'utf8', input, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, OMP_NUM_THREADS: '2' } });
  if (r.status !== 0) throw new Error(`python ${args.slice(0, 2).join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}
