#!/usr/bin/env node
// The CUDA architectures pneumo-native's kernels are compiled for, in one place: CMakeLists.txt
// calls this (`--cmake`), and the compile test (test/native/compile.test.ts) uses the same list.
//
// Rule: TORCH_CUDA_ARCH_LIST when set (PyTorch's own variable: "8.0;9.0+PTX", "8.0 9.0", "Turing");
// otherwise every real architecture this nvcc supports from sm_75 (Turing) up, plus PTX for the
// newest, so that a GPU newer than the toolkit still runs the kernels (JIT-compiled from PTX).
// Never a fixed list: CUDA 13 dropped sm_70, and a fixed list breaks on the next toolkit.
import { execFileSync } from 'node:child_process';

/** Oldest architecture built by default (Turing: T4; anything older is rare in training fleets). */
export const MIN_DEFAULT_ARCH = 75;

const NAMED = { kepler: ['3.5'], maxwell: ['5.0', '5.2'], pascal: ['6.0', '6.1'], volta: ['7.0'], turing: ['7.5'], ampere: ['8.0', '8.6'], ada: ['8.9'], hopper: ['9.0'], blackwell: ['10.0', '12.0'] };

/**
 * Architectures as CMake's CUDA_ARCHITECTURES entries ("80-real", "120" = SASS + PTX).
 * @param {{ env?: NodeJS.ProcessEnv, nvcc?: string, supported?: number[] }} options
 * @returns {{ architectures: string[], source: string }}
 */
export function cudaArchitectures(options = {}) {
  const env = options.env ?? process.env;
  const list = env.TORCH_CUDA_ARCH_LIST?.trim();
  if (list) return { architectures: parseTorchArchList(list), source: 'TORCH_CUDA_ARCH_LIST' };
  const supported = options.supported ?? supportedArchitectures(options.nvcc ?? 'nvcc');
  const wanted = supported.filter((a) => a >= MIN_DEFAULT_ARCH).sort((a, b) => a - b);
  if (wanted.length === 0) {
    throw new Error(`nvcc supports no architecture from sm_${MIN_DEFAULT_ARCH} up (it lists ${supported.join(', ') || 'none'}): set TORCH_CUDA_ARCH_LIST`);
  }
  const newest = wanted[wanted.length - 1];
  return { architectures: [...wanted.slice(0, -1).map((a) => `${a}-real`), `${newest}`], source: 'nvcc --list-gpu-arch' };
}

/**
 * PyTorch's TORCH_CUDA_ARCH_LIST ("7.5;8.0;9.0+PTX", spaces or semicolons, names like "Hopper")
 * as CMake entries: "X.Y" -> "XY-real", "X.Y+PTX" -> "XY" (SASS and PTX).
 * @param {string} list
 * @returns {string[]}
 */
export function parseTorchArchList(list) {
  const out = [];
  for (const raw of list.split(/[;\s]+/).filter(Boolean)) {
    const ptx = /\+PTX$/i.test(raw);
    const name = raw.replace(/\+PTX$/i, '');
    const versions = NAMED[name.toLowerCase()] ?? [name];
    for (const v of versions) {
      const m = /^(\d+)\.(\d+)[a-z]?$/.exec(v);
      if (!m) throw new Error(`TORCH_CUDA_ARCH_LIST: '${raw}' is not an architecture (expected entries like 8.0, 9.0+PTX or Hopper)`);
      const arch = `${m[1]}${m[2]}`;
      out.push(ptx ? arch : `${arch}-real`);
    }
  }
  if (out.length === 0) throw new Error(`TORCH_CUDA_ARCH_LIST '${list}' names no architecture`);
  return [...new Set(out)];
}

/**
 * The virtual architectures an nvcc supports (`nvcc --list-gpu-arch`: compute_75 ...).
 * @param {string} nvcc
 * @returns {number[]}
 */
export function supportedArchitectures(nvcc) {
  let text;
  try {
    text = execFileSync(nvcc, ['--list-gpu-arch'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new Error(`could not ask ${nvcc} for its architectures (--list-gpu-arch, CUDA 11.0+): ${err.message}`);
  }
  return [...new Set([...text.matchAll(/compute_(\d+)/g)].map((m) => Number(m[1])))];
}

/** nvcc -gencode flags for CMake-style entries (what the build passes for each). */
export function gencodeFlags(architectures) {
  const flags = [];
  for (const entry of architectures) {
    const [arch, kind] = entry.split('-');
    if (kind !== 'virtual') flags.push(`-gencode=arch=compute_${arch},code=sm_${arch}`);
    if (kind !== 'real') flags.push(`-gencode=arch=compute_${arch},code=compute_${arch}`);
  }
  return flags;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const nvccIndex = args.indexOf('--nvcc');
  try {
    const { architectures, source } = cudaArchitectures({ nvcc: nvccIndex >= 0 ? args[nvccIndex + 1] : 'nvcc' });
    if (args.includes('--cmake')) process.stdout.write(architectures.join(';'));
    else process.stdout.write(`${JSON.stringify({ architectures, source })}\n`);
  } catch (err) {
    process.stderr.write(`pneumo-native: ${err.message}\n`);
    process.exit(1);
  }
}
