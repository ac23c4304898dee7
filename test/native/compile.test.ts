/**
 * The native sources compile against LibTorch versions and CUDA settings CI cannot build for:
 * LibTorch 2.6 (Debian trixie's headers, CPU and CUDA-enabled) and 1.13 with CUDA, plus every .cu
 * file through this machine's nvcc for every architecture the build requests. The headers are
 * fetched once into a cache (scripts/compile-check.mjs); without apt or network the test skips,
 * saying why. And the architecture rule itself (scripts/cuda-arch.mjs).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileCheck } from '../../scripts/compile-check.mjs';
import { cudaArchitectures, gencodeFlags, parseTorchArchList } from '../../scripts/cuda-arch.mjs';

function canFetch(): string | null {
  if (!existsSync('/usr/bin/apt-get') || !existsSync('/usr/bin/dpkg')) return 'no apt-get/dpkg on this machine';
  return null;
}

describe('CUDA architectures (scripts/cuda-arch.mjs)', () => {
  it('defaults to every real architecture the toolkit supports from sm_75, with PTX for the newest', () => {
    const { architectures, source } = cudaArchitectures({ env: {}, supported: [50, 70, 75, 80, 90, 100, 120] });
    expect(source).toBe('nvcc --list-gpu-arch');
    expect(architectures).toEqual(['75-real', '80-real', '90-real', '100-real', '120']);
    expect(gencodeFlags(['90-real', '120'])).toEqual([
      '-gencode=arch=compute_90,code=sm_90',
      '-gencode=arch=compute_120,code=sm_120',
      '-gencode=arch=compute_120,code=compute_120',
    ]);
    expect(() => cudaArchitectures({ env: {}, supported: [50, 60] })).toThrow(/supports no architecture from sm_75 up \(it lists 50, 60\): set TORCH_CUDA_ARCH_LIST/);
  });

  it("follows TORCH_CUDA_ARCH_LIST in PyTorch's syntax", () => {
    expect(cudaArchitectures({ env: { TORCH_CUDA_ARCH_LIST: '8.0;9.0+PTX' }, supported: [] }).architectures).toEqual(['80-real', '90']);
    expect(parseTorchArchList('7.5 8.6 Hopper+PTX')).toEqual(['75-real', '86-real', '90']);
    expect(() => parseTorchArchList('8.0;sm90')).toThrow(/'sm90' is not an architecture/);
  });

  it("this machine's nvcc (if any) yields a list without sm_70 for CUDA 13", () => {
    let version = '';
    try {
      version = execFileSync('nvcc', ['--version'], { encoding: 'utf8' });
    } catch {
      console.log('skipped: no nvcc on this machine');
      return;
    }
    const { architectures } = cudaArchitectures({ env: {} });
    expect(architectures.length).toBeGreaterThan(0);
    if (/release 1[3-9]\./.test(version)) expect(architectures).not.toContain('70-real');
  });
});

describe('compile check against LibTorch 2.6 and CUDA headers', () => {
  const reason = canFetch();
  it(
    'every native source compiles: LibTorch 2.6 CPU and CUDA, 1.13 CUDA-enabled, the N-API layer, and nvcc for every architecture',
    async () => {
      if (reason) {
        console.log(`skipped: ${reason}`);
        return;
      }
      const results = await compileCheck();
      const failed = results.filter((r) => !r.ok);
      expect(failed.map((r) => `${r.name}:\n${[...(r.errors ?? []), ...(r.warnings ?? [])].join('\n') || r.output}`)).toEqual([]);
      const names = results.map((r) => r.name);
      for (const name of ['libtorch-2.6-cpu', 'libtorch-2.6-cuda', 'libtorch-1.13-cuda', 'distributed-2.6-cpu', 'distributed-2.6-cuda-nccl', 'distributed-1.13-cuda-nccl', 'napi-layer']) expect(names).toContain(name);
      for (const r of results) console.log(`${r.name}: ${r.skipped ?? `ok in ${r.seconds.toFixed(0)} s`}${r.architectures ? ` (${r.architectures.join(' ')})` : ''}`);
    },
    900_000,
  );
});
