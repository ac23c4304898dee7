import { describe, expect, it } from 'vitest';
import { counters, smokeTrain } from '../../src/core/runtime.js';

/** Samples the event loop every 5 ms and records the largest gap between ticks. */
function watchEventLoop(): { stop: () => { maxGapMs: number; ticks: number } } {
  let last = performance.now();
  let maxGapMs = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    ticks++;
  }, 5);
  return {
    stop: () => {
      clearInterval(timer);
      return { maxGapMs, ticks };
    },
  };
}

describe('native work runs off the event loop', () => {
  it('keeps the event loop ticking (no gap over 50 ms) during a ~2 s native training job', async () => {
    // Calibrate: how many smoke steps make about two seconds on this machine (after a warm-up,
    // since the first step pays one-off kernel selection).
    await smokeTrain({ batch: 4, size: 128, steps: 2, device: 'cpu' });
    const probe = await smokeTrain({ batch: 4, size: 128, steps: 5, device: 'cpu' });
    const steps = Math.max(5, Math.ceil(2200 / Math.max(0.5, probe.msPerStep)));

    const watch = watchEventLoop();
    const started = performance.now();
    const jobPromise = smokeTrain({ batch: 4, size: 128, steps, device: 'cpu' });
    // While the job runs, the native counters say so.
    await new Promise((r) => setTimeout(r, 20));
    expect(counters().running + counters().queued).toBeGreaterThanOrEqual(1);
    const result = await jobPromise;
    const elapsed = performance.now() - started;
    const { maxGapMs, ticks } = watch.stop();

    expect(result.losses).toHaveLength(steps);
    expect(elapsed).toBeGreaterThan(1000);
    expect(ticks).toBeGreaterThan(elapsed / 50);
    expect(maxGapMs).toBeLessThan(50);
  });

  it('the smoke pass learns and is deterministic for a seed', async () => {
    const a = await smokeTrain({ batch: 2, size: 32, steps: 15, seed: 7, device: 'cpu' });
    const b = await smokeTrain({ batch: 2, size: 32, steps: 15, seed: 7, device: 'cpu' });
    expect(a.losses).toEqual(b.losses);
    expect(a.gradientsFinite).toBe(true);
    expect(a.gradientNorm).toBeGreaterThan(0);
    expect(a.losses.at(-1)!).toBeLessThan(a.losses[0]! * 0.9);
    expect(a.parameters).toBe(1 * 8 * 9 + 16 + 8 * 8 * 9 + 8 + 8 + 1);
  });

  it('rejects bad smoke options before reaching native code', async () => {
    await expect(smokeTrain({ steps: 0 })).rejects.toThrow(/Expected an integer between 1 and 1000000 for steps but received 0/);
    await expect(smokeTrain({ device: 'cpu', size: 2 })).rejects.toThrow(/for size/);
  });
});
