import { describe, expect, it } from 'vitest';
import { diceFromRuns, diceScore, evaluate, meanDice, toRuns } from '../../src/data/metrics.js';
import { decodeRuns, encode } from '../../src/data/rle.js';
import { Random } from '../../src/core/random.js';

const size = { width: 4, height: 4 };

describe('metrics: per-image Dice', () => {
  it('matches hand-computed values', () => {
    // truth [0,4) (4 px); pred [2,6) (4 px); overlap 2 -> 2*2/8
    expect(diceScore('0 4', '2 4', size)).toBe(0.5);
    expect(diceScore('0 4', '0 4', size)).toBe(1);
    expect(diceScore('0 4', '8 4', size)).toBe(0);
    // truth 3 px, pred 1 px inside it -> 2*1/4
    expect(diceScore('1 3', '2 1', size)).toBe(0.5);
  });

  it('is 1 when both are empty and 0 when exactly one is', () => {
    expect(diceScore('-1', ' -1', size)).toBe(1);
    expect(diceScore([], '-1', size)).toBe(1);
    expect(diceScore('-1', '3 1', size)).toBe(0);
    expect(diceScore('3 1', '-1', size)).toBe(0);
  });

  it('accepts masks, RLE text, RLE rows (unioned) and runs, at 1024 by default', () => {
    const mask = new Uint8Array(16);
    mask[1 * 4 + 1] = 1; // column-major index 5
    mask[2 * 4 + 1] = 1; // 6
    expect(diceScore(mask, '5 2', size)).toBe(1);
    expect(diceScore(['5 1', '6 1'], '5 2', size)).toBe(1);
    expect(diceScore(decodeRuns('5 2', 4, 4), '5 2', size)).toBe(1);
    expect(diceScore('1048570 6', '1048570 3', {})).toBeCloseTo(2 * 3 / 9, 12);
    expect(() => diceScore('1048570 7', '-1', {})).toThrow(/past the last pixel/);
    expect(() => toRuns(5 as unknown as string, size, 'x')).toThrow(/Expected a Uint8Array mask, RLE text, a list of RLE rows or runs for mask of image x/);
  });

  it('agrees with a pixel count on random masks', () => {
    const rng = new Random(3);
    for (let trial = 0; trial < 50; trial++) {
      const a = new Uint8Array(12 * 10);
      const b = new Uint8Array(12 * 10);
      for (let i = 0; i < a.length; i++) {
        a[i] = rng.bool(0.3) ? 1 : 0;
        b[i] = rng.bool(0.3) ? 1 : 0;
      }
      let inter = 0;
      let sum = 0;
      for (let i = 0; i < a.length; i++) {
        inter += a[i]! & b[i]!;
        sum += a[i]! + b[i]!;
      }
      const expected = sum === 0 ? 1 : (2 * inter) / sum;
      const opts = { width: 12, height: 10 };
      expect(diceScore(encode(a, 12, 10), encode(b, 12, 10), opts)).toBeCloseTo(expected, 12);
      expect(diceFromRuns(toRuns(a, opts), toRuns(b, opts))).toBeCloseTo(expected, 12);
    }
  });
});

describe('metrics: mean Dice', () => {
  const truth = new Map<string, string | string[]>([
    ['e1', '-1'],
    ['e2', []],
    ['e3', '-1'],
    ['p1', ['0 2', '2 2']], // [0,4)
    ['p2', '8 4'],
  ]);
  const pred = new Map<string, string>([
    ['e1', '-1'], // 1
    ['e2', '3 1'], // 0
    ['e3', '-1'], // 1
    ['p1', '2 4'], // 0.5
    ['p2', '-1'], // 0
  ]);

  it('splits by the truth into empty and non-empty images', () => {
    const report = evaluate(truth, pred, size);
    expect(report).toEqual({
      meanDice: (1 + 0 + 1 + 0.5 + 0) / 5,
      images: 5,
      empty: { count: 3, meanDice: 2 / 3 },
      nonEmpty: { count: 2, meanDice: 0.25 },
      missing: [],
      extra: [],
    });
    expect(meanDice(truth, pred, size)).toBe(0.5);
  });

  it('scores the common ids and lists the missing and extra ones', () => {
    const partial = new Map(pred);
    partial.delete('p2');
    partial.delete('e2');
    partial.set('zz', '-1');
    const report = evaluate(truth, partial, size);
    expect(report.missing).toEqual(['e2', 'p2']);
    expect(report.extra).toEqual(['zz']);
    expect(report.images).toBe(3);
    expect(report.meanDice).toBeCloseTo(2.5 / 3, 12);
    expect(report.nonEmpty).toEqual({ count: 1, meanDice: 0.5 });
    expect(() => meanDice(truth, partial, size)).toThrow(/missing 2 image\(s\) of the truth: e2, p2/);
  });

  it('reports null means for empty groups', () => {
    const report = evaluate(new Map([['a', '-1']]), new Map([['a', '-1']]), size);
    expect(report.nonEmpty).toEqual({ count: 0, meanDice: null });
    expect(report.meanDice).toBe(1);
  });
});
