import { describe, expect, it } from 'vitest';
import { Random, deriveSeed, normal, randInt, shuffle } from '../../src/core/random.js';

describe('random', () => {
  it('is deterministic per seed and differs between seeds', () => {
    const a = new Random(42);
    const b = new Random(42);
    const c = new Random(43);
    const xs = Array.from({ length: 8 }, () => a.nextUint32());
    expect(Array.from({ length: 8 }, () => b.nextUint32())).toEqual(xs);
    expect(Array.from({ length: 8 }, () => c.nextUint32())).not.toEqual(xs);
    expect(new Random('abc').next()).toBe(new Random('abc').next());
  });

  it('pins the stream so that data generated from it stays reproducible across versions', () => {
    const rng = new Random(1);
    expect(Array.from({ length: 3 }, () => rng.nextUint32())).toMatchSnapshot();
    expect(deriveSeed(42, 0, 1)).toMatchSnapshot();
  });

  it('draws uniform floats in [0, 1) with the right mean', () => {
    const rng = new Random(3);
    let sum = 0;
    for (let i = 0; i < 20000; i++) {
      const x = rng.next();
      expect(x >= 0 && x < 1).toBe(true);
      sum += x;
    }
    expect(sum / 20000).toBeCloseTo(0.5, 1);
  });

  it('draws integers covering [min, max] inclusively and validates the range', () => {
    const rng = new Random(5);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(randInt(rng, -2, 3));
    expect([...seen].sort((x, y) => x - y)).toEqual([-2, -1, 0, 1, 2, 3]);
    expect(() => randInt(rng, 3, 1)).toThrow(/Expected an integer >= 3 for max but received 1/);
    expect(() => randInt(rng, 0.5, 1)).toThrow(/for min/);
  });

  it('draws normals with the requested mean and standard deviation', () => {
    const rng = new Random(9);
    const n = 20000;
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < n; i++) {
      const x = normal(rng, 10, 2);
      sum += x;
      sq += x * x;
    }
    const mean = sum / n;
    expect(mean).toBeCloseTo(10, 1);
    expect(Math.sqrt(sq / n - mean * mean)).toBeCloseTo(2, 1);
  });

  it('shuffles in place into a permutation, deterministically', () => {
    const items = Array.from({ length: 50 }, (_, i) => i);
    const once = shuffle(items.slice(), new Random(11));
    expect(once.slice().sort((x, y) => x - y)).toEqual(items);
    expect(once).not.toEqual(items);
    expect(shuffle(items.slice(), new Random(11))).toEqual(once);
  });

  it('derives independent seeds from (seed, index) regardless of order', () => {
    const seeds = [0, 1, 2, 3].map((i) => deriveSeed(42, i));
    expect(new Set(seeds).size).toBe(4);
    expect(deriveSeed(42, 2)).toBe(seeds[2]);
    expect(deriveSeed(42, 2)).not.toBe(deriveSeed(43, 2));
    expect(() => deriveSeed(1.5)).toThrow(/Expected a safe integer or a string for seed/);
  });
});
