import { describe, expect, it } from 'vitest';
import { applyTriplet, fillHoles, labelRegions, nonEmptyRatio, removeSmallRegions } from '../../src/scoring/postprocess.js';

/** Draws a mask from rows of '#' (inside) and '.' (outside). */
function draw(rows: string[]): { mask: Uint8Array; height: number; width: number } {
  const height = rows.length;
  const width = rows[0]!.length;
  const mask = new Uint8Array(height * width);
  rows.forEach((row, r) => [...row].forEach((ch, c) => (mask[r * width + c] = ch === '#' ? 1 : 0)));
  return { mask, height, width };
}

function show(mask: Uint8Array, width: number): string[] {
  const rows: string[] = [];
  for (let r = 0; r < mask.length / width; r++) rows.push([...mask.subarray(r * width, (r + 1) * width)].map((v) => (v ? '#' : '.')).join(''));
  return rows;
}

describe('applyTriplet', () => {
  it('is empty when fewer than area pixels exceed top, else p > bottom', () => {
    const p = new Float32Array([0.9, 0.8, 0.5, 0.35, 0.3, 0.1]);
    // 2 pixels > 0.75 at 1x6 counted as (1024/1)*(1024/6) each: area 2 * 174762.67 ~ 349525
    expect(applyTriplet(p, 1, 6, [0.75, 349_526, 0.3]).positive).toBe(false);
    const r = applyTriplet(p, 1, 6, [0.75, 349_525, 0.3]);
    expect(r.positive).toBe(true);
    expect([...r.mask]).toEqual([1, 1, 1, 1, 0, 0]);
    expect(r.area).toBe(4);
    // a 2x3 map counted at 3x3: each pixel is 1.5 pixels, 2 above top make 3
    expect(applyTriplet(p, 2, 3, [0.75, 3.01, 0.3], { areaSize: 3 }).positive).toBe(false);
    expect(applyTriplet(p, 2, 3, [0.75, 3, 0.3], { areaSize: 3 }).mask).toEqual(new Uint8Array([1, 1, 1, 1, 0, 0]));
  });

  it('reads uint8 maps as round(p * 255)', () => {
    const p = new Float32Array([0.9, 0.8, 0.5, 0.35, 0.3, 0.1]);
    const u = Uint8Array.from(p, (v) => Math.round(v * 255));
    const a = applyTriplet(p, 2, 3, [0.6, 1, 0.32], { areaSize: 3 });
    const b = applyTriplet(u, 2, 3, [0.6, 1, 0.32], { areaSize: 3 });
    expect(b).toEqual(a);
    // 0.3 * 255 = 76.5: v = 77 (0.302) is above, 76 is not
    expect([...applyTriplet(new Uint8Array([77, 76]), 1, 2, [0, 0, 0.3]).mask]).toEqual([1, 0]);
  });

  it('rejects bad inputs by name', () => {
    expect(() => applyTriplet(new Float32Array(5), 2, 3, [0.5, 0, 0.5])).toThrow(/Expected 2 x 3 = 6 values for probs length but received 5/);
    expect(() => applyTriplet(new Float32Array(6), 2, 3, [1.5, 0, 0.5])).toThrow(/Expected a number between 0 and 1 for triplet top but received 1.5/);
    expect(() => applyTriplet([0.5] as unknown as Float32Array, 1, 1, [0.5, 0, 0.5])).toThrow(/Float32Array or Uint8Array probability map for probs/);
  });
});

describe('connected regions', () => {
  const shapes = draw([
    '..........',
    '.####.....',
    '.#..#...#.',
    '.####.....',
    '..........',
    '......##..',
    '......##..',
    '#.........',
  ]);

  it('labels 8-connected regions', () => {
    const diagonal = draw(['#..', '.#.', '..#']);
    expect(labelRegions(diagonal.mask, 3, 3).count).toBe(1);
    const { count, areas } = labelRegions(shapes.mask, shapes.height, shapes.width);
    expect(count).toBe(4);
    expect(areas.slice(1).sort((a, b) => a - b)).toEqual([1, 1, 4, 10]);
  });

  it('fills holes but not background reaching the border', () => {
    const ring = draw(['#####', '#...#', '#.#.#', '#...#', '##.##']);
    expect(show(fillHoles(ring.mask, 5, 5), 5)).toEqual(['#####', '#...#', '#.#.#', '#...#', '##.##']);
    const closed = draw(['#####', '#...#', '#.#.#', '#...#', '#####']);
    expect(show(fillHoles(closed.mask, 5, 5), 5)).toEqual(['#####', '#####', '#####', '#####', '#####']);
  });

  it('removes regions under the minimum area and fills the holes of those kept', () => {
    // the ring encloses 2 hole pixels: filled area 12; the square is 4; the dots 1
    const r = removeSmallRegions(shapes.mask, shapes.height, shapes.width, 4);
    expect(show(r.mask, shapes.width)).toEqual([
      '..........',
      '.####.....',
      '.####.....',
      '.####.....',
      '..........',
      '......##..',
      '......##..',
      '..........',
    ]);
    expect(r).toMatchObject({ regions: 2, removed: 2 });
    // 11 keeps the ring only because its holes count toward its area
    expect(removeSmallRegions(shapes.mask, shapes.height, shapes.width, 11).regions).toBe(1);
    expect(removeSmallRegions(shapes.mask, shapes.height, shapes.width, 13).regions).toBe(0);
    // without filling, kept regions keep their holes
    expect(show(removeSmallRegions(shapes.mask, shapes.height, shapes.width, 5, { fillHoles: false }).mask, shapes.width)[2]).toBe('.#..#.....');
    // area at 1024: each pixel of this 8x10 mask counts 1024/8 * 1024/10 = 13107.2
    expect(removeSmallRegions(shapes.mask, shapes.height, shapes.width, 4 * 13107.2, { areaSize: 1024 }).regions).toBe(2);
    expect(removeSmallRegions(shapes.mask, shapes.height, shapes.width, 4 * 13107.2 + 1, { areaSize: 1024 }).regions).toBe(1);
  });

  it('keeps a small region inside a kept region\'s hole, as a filled contour does', () => {
    const nested = draw(['#######', '#.....#', '#..#..#', '#.....#', '#######']);
    const r = removeSmallRegions(nested.mask, 5, 7, 10, { fillHoles: false });
    expect(show(r.mask, 7)[2]).toBe('#..#..#');
  });
});

describe('nonEmptyRatio', () => {
  it('keeps the images with the most positive pixels', () => {
    expect(nonEmptyRatio([10, 0, 50, 30, 5], 0.4)).toEqual([false, false, true, true, false]);
    expect(nonEmptyRatio([10, 0, 0, 0, 0], 0.6)).toEqual([true, false, false, false, false]);
    expect(nonEmptyRatio([3, 3, 3, 3], 0.5)).toEqual([true, true, false, false]);
    expect(nonEmptyRatio([], 0.2)).toEqual([]);
    expect(() => nonEmptyRatio([1], 1.2)).toThrow(/Expected a number between 0 and 1 for ratio but received 1.2/);
  });
});
