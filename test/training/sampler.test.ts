import { describe, expect, it } from 'vitest';
import { EpochSampler, SamplerConfigError, negativesFor, parseSamplerConfig, sampleRateAt } from '../../src/training/sampler.js';

/** 10 positives (indices 0, 10, 20, ...) among 100 images. */
const labels = Array.from({ length: 100 }, (_, i) => i % 10 === 0);
const isPositive = (i: number): boolean => labels[i] === true;

describe('EpochSampler: sample-rate (first place)', () => {
  it('takes all positives and int(n_pos (1 - p) / p) negatives, as the Python sampler computes it', () => {
    expect(negativesFor(10, 0.8)).toBe(2); // 10 * 0.2 / 0.8 = 2.4999999999999996 in float64
    expect(negativesFor(10, 0.6)).toBe(6);
    expect(negativesFor(10, 0.4)).toBe(15);
    expect(negativesFor(3, 0.5)).toBe(3);
    for (const p of [0.8, 0.6, 0.4]) {
      const plan = new EpochSampler(labels, { mode: 'sample-rate', sampleRate: p }, { seed: 42 }).epoch(0);
      const positives = Array.from(plan.indices).filter(isPositive);
      expect(new Set(positives).size).toBe(10);
      expect(positives.length).toBe(10);
      expect(plan.indices.length - 10).toBe(negativesFor(10, p));
      expect(plan.negatives).toBe(negativesFor(10, p));
    }
  });

  it('draws negatives with replacement and shuffles positives among them', () => {
    const sampler = new EpochSampler(labels, { mode: 'sample-rate', sampleRate: 0.1 }, { seed: 1 });
    const plan = sampler.epoch(3);
    const negatives = Array.from(plan.indices).filter((i) => !isPositive(i));
    expect(negatives.length).toBe(90);
    // 90 draws with replacement from 90 negatives: repeats are certain (P(no repeat) = 90!/90^90).
    expect(new Set(negatives).size).toBeLessThan(90);
    // Positives are not all at the start or the end.
    const firstPositive = Array.from(plan.indices).findIndex(isPositive);
    expect(firstPositive).toBeLessThan(plan.indices.length - 10);
    expect(Array.from(plan.indices.slice(0, 10)).every(isPositive)).toBe(false);
  });

  it('is a pure function of (seed, epoch): a resumed run sees the same epochs', () => {
    const a = new EpochSampler(labels, { mode: 'sample-rate', sampleRate: 0.4 }, { seed: 42, epochs: 10 });
    const b = new EpochSampler(labels, { mode: 'sample-rate', sampleRate: 0.4 }, { seed: 42, epochs: 10 });
    expect(Array.from(b.epoch(7).indices)).toEqual(Array.from(a.epoch(7).indices));
    expect(Array.from(a.epoch(7).indices)).toEqual(Array.from(a.epoch(7).indices));
    expect(Array.from(a.epoch(6).indices)).not.toEqual(Array.from(a.epoch(7).indices));
    const c = new EpochSampler(labels, { mode: 'sample-rate', sampleRate: 0.4 }, { seed: 43, epochs: 10 });
    expect(Array.from(c.epoch(7).indices)).not.toEqual(Array.from(a.epoch(7).indices));
  });

  it('slides p linearly from start to end over the run', () => {
    expect(sampleRateAt({ start: 0.8, end: 0.4 }, 0, 5)).toBeCloseTo(0.8, 12);
    expect(sampleRateAt({ start: 0.8, end: 0.4 }, 2, 5)).toBeCloseTo(0.6, 12);
    expect(sampleRateAt({ start: 0.8, end: 0.4 }, 4, 5)).toBeCloseTo(0.4, 12);
    expect(sampleRateAt({ start: 0.5, end: 0.4 }, 0, 1)).toBe(0.5);
    expect(sampleRateAt(0.6, 3, 5)).toBe(0.6);
    const sampler = new EpochSampler(labels, { mode: 'sample-rate', sampleRate: { start: 0.8, end: 0.4 } }, { seed: 0, epochs: 5 });
    const lengths = [0, 1, 2, 3, 4].map((e) => sampler.epoch(e).indices.length);
    expect(lengths).toEqual([0, 1, 2, 3, 4].map((e) => 10 + negativesFor(10, sampleRateAt({ start: 0.8, end: 0.4 }, e, 5))));
    expect(lengths[0]).toBe(12);
    expect(lengths[4]).toBe(25);
    expect(sampler.epoch(2).sampleRate).toBeCloseTo(0.6, 12);
  });
});

describe('EpochSampler: other modes', () => {
  it('positive-only visits each positive once', () => {
    const plan = new EpochSampler(labels, { mode: 'positive-only' }, { seed: 5 }).epoch(0);
    expect(Array.from(plan.indices).sort((a, b) => a - b)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    expect(Array.from(plan.indices)).not.toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
  });

  it('all visits every image once', () => {
    const plan = new EpochSampler(labels, { mode: 'all' }, { seed: 5 }).epoch(2);
    expect(Array.from(plan.indices).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('balanced batches hold exactly half positives, cycling through each class without replacement', () => {
    const plan = new EpochSampler(labels, { mode: 'balanced', batchSize: 4 }, { seed: 9 }).epoch(0);
    expect(plan.indices.length).toBe(100);
    expect(plan.batchSize).toBe(4);
    for (let b = 0; b < 25; b++) {
      const batch = Array.from(plan.indices.slice(b * 4, b * 4 + 4));
      expect(batch.filter(isPositive).length).toBe(2);
    }
    // 50 positive slots over 10 positives: every positive appears exactly 5 times.
    const counts = new Map<number, number>();
    for (const i of plan.indices) if (isPositive(i)) counts.set(i, (counts.get(i) ?? 0) + 1);
    expect([...counts.values()]).toEqual(new Array(10).fill(5));
    // 50 negative slots over 90 negatives: no negative twice.
    const negatives = Array.from(plan.indices).filter((i) => !isPositive(i));
    expect(new Set(negatives).size).toBe(50);
    const custom = new EpochSampler(labels, { mode: 'balanced', batchSize: 8, positiveFraction: 0.25, batchesPerEpoch: 3 }, { seed: 9 }).epoch(1);
    expect(custom.indices.length).toBe(24);
    expect(custom.positives).toBe(6);
  });
});

describe('sampler config', () => {
  it('round-trips through JSON and rejects typos naming the closest key', () => {
    const config = { mode: 'sample-rate', sampleRate: { start: 0.5, end: 0.4 } };
    expect(parseSamplerConfig(JSON.parse(JSON.stringify(config)))).toEqual(config);
    expect(() => parseSamplerConfig({ mode: 'sample-rate', sampleRat: 0.4 })).toThrow(/Unknown key "sampleRat".*did you mean "sampleRate"/);
    expect(() => parseSamplerConfig({ mode: 'sample_rate', sampleRate: 0.4 })).toThrow(/did you mean "sample-rate"/);
    expect(() => parseSamplerConfig({ mode: 'sample-rate', sampleRate: 0 })).toThrow(SamplerConfigError);
    expect(() => parseSamplerConfig({ mode: 'sample-rate', sampleRate: { start: 0.5, edn: 0.4 } })).toThrow(/did you mean "end"/);
    expect(() => parseSamplerConfig({ mode: 'balanced', batchSize: 1 })).toThrow(/batchSize/);
    expect(() => new EpochSampler([false, false], { mode: 'positive-only' }, { seed: 1 })).toThrow(/needs positive images/);
  });
});
