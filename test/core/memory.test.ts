import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';

/** The elements as plain numbers (float64 holds every int32/float32 value exactly). */
function values(t: Tensor): number[] {
  return Array.from(t.dataSync('float64'));
}
import { counters } from '../../src/core/runtime.js';
import { collectGarbage } from '../helpers/gc.js';

const MB = 1024 * 1024;

describe('native memory', () => {
  it('10,000 create/dispose cycles of 1 MB tensors leave RSS within +50 MB', async () => {
    const data = new Float32Array(MB / 4).fill(1.5);
    // Warm up allocator and code paths first, then measure.
    for (let i = 0; i < 200; i++) Tensor.from(data).dispose();
    await collectGarbage();
    const before = process.memoryUsage().rss;
    const liveBefore = counters().liveTensors;
    for (let i = 0; i < 10_000; i++) {
      const t = Tensor.from(data);
      if (i % 1000 === 0) expect(t.dataSync()[1234]).toBe(1.5);
      t.dispose();
    }
    await collectGarbage();
    const grown = (process.memoryUsage().rss - before) / MB;
    expect(counters().liveTensors).toBe(liveBefore);
    expect(grown).toBeLessThan(50);
  });

  it('finalizers free tensors that were never disposed, and external memory is reported', async () => {
    await collectGarbage();
    const base = counters();
    const keep: Tensor[] = [];
    for (let i = 0; i < 50; i++) keep.push(Tensor.from(new Float32Array(MB / 4)));
    const during = counters();
    expect(during.liveTensors - base.liveTensors).toBe(50);
    expect(during.externalBytes - base.externalBytes).toBe(50 * MB);
    keep.length = 0;
    for (let i = 0; i < 20 && counters().liveTensors > base.liveTensors; i++) await collectGarbage();
    const after = counters();
    expect(after.liveTensors).toBe(base.liveTensors);
    expect(after.externalBytes).toBe(base.externalBytes);
  });

  it('garbage collection keeps up with undisposed tensors (external memory pressure)', async () => {
    const { emptyCpuCache } = await import('../../src/core/runtime.js');
    await collectGarbage();
    emptyCpuCache();
    const before = process.memoryUsage().rss;
    const liveBefore = counters().cpuLiveBytes;
    // 2 GB in total if nothing were freed: only GC driven by the reported external memory frees it.
    for (let i = 0; i < 500; i++) Tensor.from(new Uint8Array(4 * MB));
    await collectGarbage();
    expect(counters().cpuLiveBytes).toBeLessThanOrEqual(liveBefore);
    // The freed blocks sit in the CPU cache (its cap is a quarter of physical memory) until emptied.
    emptyCpuCache();
    expect(counters().cpuCachedBytes).toBe(0);
    expect((process.memoryUsage().rss - before) / MB).toBeLessThan(1024);
  });
});

describe('CPU caching allocator', () => {
  it('reuses large blocks, respects its cap and gives memory back on emptyCpuCache', async () => {
    const { emptyCpuCache, setCpuCacheLimit } = await import('../../src/core/runtime.js');
    emptyCpuCache();
    const big = await Tensor.zeros([8, MB / 4]); // 8 MB block
    const live = counters().cpuLiveBytes;
    expect(live).toBeGreaterThanOrEqual(8 * MB);
    big.dispose();
    expect(counters().cpuCachedBytes).toBeGreaterThanOrEqual(8 * MB);
    const hits = counters().cpuCacheHits;
    const again = await Tensor.zeros([8, MB / 4]);
    expect(counters().cpuCacheHits).toBe(hits + 1);
    expect(values((await again.sum()))).toEqual([0]);
    again.dispose();
    setCpuCacheLimit(4 * MB);
    expect(counters().cpuCachedBytes).toBeLessThanOrEqual(4 * MB);
    setCpuCacheLimit(1024 * MB);
    emptyCpuCache();
    expect(counters().cpuCachedBytes).toBe(0);
  });
});
