import { describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { evaluate } from '../../src/data/metrics.js';
import { applyTriplet } from '../../src/scoring/postprocess.js';
import { bestTriplet, defaultGrid, MapSummaries, scoreTriplets, summariseMaps, tripletGrid } from '../../src/scoring/thresholds.js';
import type { Triplet } from '../../src/scoring/triplet.js';

/** Random blob-like maps: a smooth bump at a random place on low noise, some images without truth. */
function randomSet(seed: number, count: number, h: number, w: number) {
  const rng = new Random(seed);
  const maps: Float32Array[] = [];
  const truth: Uint8Array[] = [];
  for (let m = 0; m < count; m++) {
    const map = new Float32Array(h * w);
    const mask = new Uint8Array(h * w);
    const positive = rng.next() < 0.4;
    const cy = rng.next() * h;
    const cx = rng.next() * w;
    const radius = 2 + rng.next() * 6;
    const peak = rng.next();
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const d = Math.hypot(r - cy, c - cx) / radius;
        map[r * w + c] = Math.min(1, Math.max(0, peak * Math.exp(-d * d) + 0.25 * rng.next()));
        if (positive && d < 1 + 0.3 * rng.next()) mask[r * w + c] = 1;
      }
    }
    maps.push(map);
    truth.push(mask);
  }
  return { maps, truth };
}

/** The reference: threshold each map with applyTriplet and score with metrics.evaluate. */
function bruteForce(maps: (Float32Array | Uint8Array)[], truth: Uint8Array[], h: number, w: number, triplet: Triplet, areaSize: number) {
  const t = new Map<string, Uint8Array>();
  const p = new Map<string, Uint8Array>();
  maps.forEach((map, i) => {
    t.set(String(i), truth[i]!);
    p.set(String(i), applyTriplet(map, h, w, triplet, { areaSize }).mask);
  });
  return evaluate(t, p, { width: w, height: h });
}

describe('threshold search', () => {
  const h = 24;
  const w = 20;
  const { maps, truth } = randomSet(11, 40, h, w);
  const grid: Triplet[] = tripletGrid([0.3, 0.5, 0.6, 0.75], [0, 3000, 30_000, 120_000], [0.2, 0.3, 0.4, 0.55]);

  it('scores every triplet of float32 maps as thresholding each map would', async () => {
    const summaries = await summariseMaps(maps, h, w, { truth, thresholds: [0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.75] });
    expect(summaries.count).toBe(40);
    const scores = await scoreTriplets(summaries, grid, { areaSize: 1024 });
    let checked = 0;
    for (const s of scores) {
      const ref = bruteForce(maps, truth, h, w, s.triplet, 1024);
      expect(s.meanDice).toBeCloseTo(ref.meanDice!, 12);
      expect(s.empty.meanDice).toBeCloseTo(ref.empty.meanDice!, 12);
      expect(s.nonEmpty.meanDice).toBeCloseTo(ref.nonEmpty.meanDice!, 12);
      expect(s.empty.count).toBe(ref.empty.count);
      checked++;
    }
    expect(checked).toBe(64);
    // scores differ across the grid (the test would not notice a constant)
    expect(new Set(scores.map((s) => s.meanDice!.toFixed(6))).size).toBeGreaterThan(10);
    const best = bestTriplet(scores);
    const bestRef = Math.max(...grid.map((t) => bruteForce(maps, truth, h, w, t, 1024).meanDice!));
    expect(best.meanDice).toBeCloseTo(bestRef, 12);
  });

  it('scores uint8 maps exactly at any threshold, and chunks concatenate', async () => {
    const u8 = maps.map((m) => Uint8Array.from(m, (v) => Math.round(v * 255)));
    const a = await summariseMaps(u8.slice(0, 15), h, w, { truth: truth.slice(0, 15), threads: 1 });
    const b = await summariseMaps(u8.slice(15), h, w, { truth: truth.slice(15), threads: 2 });
    const both = a.concat(b);
    expect(both.count).toBe(40);
    const odd: Triplet[] = [...grid, [0.333, 1234, 0.217], [1, 0, 1], [0, 0, 0]];
    const scores = await scoreTriplets(both, odd, { areaSize: 256 });
    for (const s of scores) {
      const ref = bruteForce(u8, truth, h, w, s.triplet, 256);
      expect(s.meanDice).toBeCloseTo(ref.meanDice!, 12);
      expect(s.nonEmpty.meanDice).toBeCloseTo(ref.nonEmpty.meanDice!, 12);
    }
    expect(both.countAbove(3, 0.5)).toBe(u8[3]!.filter((v) => v > 127.5).length);
  });

  it('takes concatenated maps and counts positives', async () => {
    const flat = new Float32Array(maps.length * h * w);
    maps.forEach((m, i) => flat.set(m, i * h * w));
    const s = await summariseMaps(flat, h, w, { truth, thresholds: [0.5] });
    const [score, all] = await scoreTriplets(s, [[0.5, 1, 0.5], [0.5, 0, 0.5]]);
    const positives = maps.filter((m) => m.some((v) => v > 0.5)).length;
    expect(score!.positives).toBe(positives);
    expect(positives).toBeLessThan(40);
    // area 0: count(p > top) < 0 never holds, so every image is positive
    expect(all!.positives).toBe(40);
  });

  it('rejects what it cannot score, naming it', async () => {
    const noTruth = await summariseMaps(maps.slice(0, 2), h, w, { thresholds: [0.5] });
    expect(noTruth).toBeInstanceOf(MapSummaries);
    await expect(scoreTriplets(noTruth, [[0.5, 0, 0.5]])).rejects.toThrow(/summaries made with truth/);
    const s = await summariseMaps(maps.slice(0, 2), h, w, { truth: truth.slice(0, 2), thresholds: [0.5] });
    await expect(scoreTriplets(s, [[0.5, 0, 0.4]])).rejects.toThrow(/threshold the float maps were summarised over for 0.4/);
    await expect(summariseMaps([new Float32Array(3)], h, w)).rejects.toThrow(/Expected a Float32Array of 24 x 20 = 480 values for maps\[0\]/);
    await expect(summariseMaps(maps.slice(0, 2), h, w, { truth: truth.slice(0, 1) })).rejects.toThrow(/for truth/);
  });

  it('has the SPEC grid first in the default grid', () => {
    const grid = defaultGrid();
    expect(grid.slice(0, 8)).toEqual([
      [0.75, 1000, 0.3],
      [0.75, 1000, 0.4],
      [0.75, 2000, 0.3],
      [0.75, 2000, 0.4],
      [0.6, 2000, 0.3],
      [0.6, 2000, 0.4],
      [0.6, 3000, 0.3],
      [0.6, 3000, 0.4],
    ]);
    expect(grid).toContainEqual([0.7, 600, 0.3]);
    expect(new Set(grid.map((t) => t.join())).size).toBe(grid.length);
  });
});
