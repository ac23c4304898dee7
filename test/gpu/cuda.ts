/** Shared by the CUDA tests: whether a CUDA device is usable here, and comparisons. */
import { loadBinding } from '../../src/native/binding.js';
import type { Tensor } from '../../src/core/tensor.js';

let reason: string | null | undefined;

/** null when CUDA tests can run; otherwise the one-line reason they skip. */
export async function cudaSkipReason(): Promise<string | null> {
  if (reason !== undefined) return reason;
  const info = await loadBinding().runtimeInfo();
  if (!info.builtWithCuda) reason = `this addon was built against a CPU LibTorch (${info.torchVersion}): no CUDA kernels`;
  else if (!info.cudaAvailable) reason = 'no CUDA device is visible';
  else reason = null;
  return reason;
}

/** Logs the skip line once per file (vitest shows console output of the file). */
export async function announce(file: string): Promise<boolean> {
  const why = await cudaSkipReason();
  if (why) console.log(`${file}: CUDA tests skipped: ${why}`);
  return why === null;
}

/** Largest |a - b| / (1 + |b|). */
export function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
  return worst;
}

/** sum |a - b| / sum |b|: the whole-map relative error. */
export function relL1(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += Math.abs(a[i]! - b[i]!);
    den += Math.abs(b[i]!);
  }
  return num / Math.max(den, Number.MIN_VALUE);
}

/** A tensor's values on the CPU as float32. */
export async function values(t: Tensor): Promise<Float32Array> {
  const cpu = t.device === 'cpu' ? t : await t.to('cpu');
  const out = Float32Array.from(await cpu.data('float32'));
  if (cpu !== t) cpu.dispose();
  return out;
}
