import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { detectBlas, getThreads, manualSeed, runtimeReport, setThreads } from '../../src/core/runtime.js';

describe('runtime', () => {
  it('defaults LibTorch threads to the machine cores and applies changes to worker threads', async () => {
    expect(getThreads()).toBe(availableParallelism());
    setThreads(1);
    expect((await runtimeReport()).threads.intraOp).toBe(1);
    setThreads(availableParallelism());
    expect((await runtimeReport()).threads.intraOp).toBe(availableParallelism());
    expect(() => setThreads(0)).toThrow(/Expected an integer between 1 and 1024 for threads but received 0/);
  });

  it('reports versions, CUDA and BLAS', async () => {
    const r = await runtimeReport();
    expect(r.packageVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(r.addonVersion).toBe(r.packageVersion);
    expect(r.libtorch.version).toMatch(/^\d+\.\d+/);
    expect(typeof r.cuda.available).toBe('boolean');
    expect(r.cuda.devices.length).toBe(r.cuda.deviceCount);
    expect(r.defaultDevice).toBe(r.cuda.available ? 'cuda:0' : 'cpu');
    expect(r.blas.libraries.length).toBeGreaterThan(0);
  });

  it('uses a fast BLAS (setup installs OpenBLAS on Debian)', () => {
    const blas = detectBlas();
    expect(blas.slow).toBe(false);
    expect(blas.name).not.toBe('none loaded');
  });

  it('manualSeed makes random tensors reproducible', async () => {
    manualSeed(123);
    const a = (await Tensor.randn([16])).dataSync();
    manualSeed(123);
    const b = (await Tensor.randn([16])).dataSync();
    manualSeed(124);
    const c = (await Tensor.randn([16])).dataSync();
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(() => manualSeed(-1)).toThrow(/for seed/);
    manualSeed(2n ** 63n);
  });
});
