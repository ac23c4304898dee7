import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { blendMaps, parseWeighted } from '../../src/inference/blend.js';
import { MapReader, MapWriter } from '../../src/inference/maps.js';

const dir = await mkdtemp(join(tmpdir(), 'pn-blend-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

async function store(name: string, ids: string[], size: number, maps: number[][], labels?: number[], dtype: 'uint8' | 'float16' = 'float16') {
  const path = join(dir, name);
  const w = await MapWriter.create(path, { ids, height: size, width: size, dtype });
  for (let i = 0; i < ids.length; i++) await w.write(i, Float32Array.from(maps[i]!), labels?.[i]);
  await w.close();
  return path;
}

describe('blend', () => {
  it('averages maps with normalised weights, resizing to a common size', async () => {
    // a: 2x2 maps; b: 4x4 maps holding the same ids in another order
    const a = await store('a.pnm', ['x', 'y'], 2, [
      [0, 0.5, 1, 0.25],
      [1, 1, 1, 1],
    ], [0.2, 0.6]);
    const b = await store('b.pnm', ['y', 'x'], 2, [
      [0, 0, 0, 0],
      [0.5, 0.5, 0.5, 0.5],
    ], [1, 0.4]);
    const out = join(dir, 'ab.pnm');
    const r = await blendMaps([{ path: a, weight: 0.4 }, { path: b, weight: 0.6 }], out);
    expect(r).toMatchObject({ images: 2, blended: 2, size: 2 });
    const m = await MapReader.open(out);
    expect(m.ids).toEqual(['x', 'y']);
    // x: 0.4 * a.x + 0.6 * b.x ; y: 0.4 * 1 + 0.6 * 0
    const x = await m.read('x');
    const expected = [0.4 * 0 + 0.6 * 0.5, 0.4 * 0.5 + 0.6 * 0.5, 0.4 * 1 + 0.6 * 0.5, 0.4 * 0.25 + 0.6 * 0.5];
    expected.forEach((v, i) => expect(x[i]).toBeCloseTo(v, 3));
    (await m.read('y')).forEach((v) => expect(v).toBeCloseTo(0.4, 3));
    expect(m.label('x')).toBeCloseTo(0.4 * 0.2 + 0.6 * 0.4, 6);
    expect(m.label('y')).toBeCloseTo(0.4 * 0.6 + 0.6 * 1, 6);
    expect((m.producer.blend as { weight: number }[]).map((i) => i.weight)).toEqual([0.4, 0.6]);
    await m.close();
  });

  it('resizes bilinearly with half-pixel centres before averaging', async () => {
    const small = await store('small.pnm', ['x'], 2, [[0, 1, 0, 1]], undefined, 'float16');
    const big = await store('big.pnm', ['x'], 4, [Array(16).fill(0.5)], undefined, 'float16');
    const out = join(dir, 'mixed.pnm');
    const r = await blendMaps([{ path: small }, { path: big }], out, { dtype: 'float16' });
    expect(r.size).toBe(4);
    const m = await MapReader.open(out);
    // the 2x2 [0 1; 0 1] at 4x4: columns 0, 0.25, 0.75, 1 (edges clamp); mean with 0.5
    const row = [0, 0.25, 0.75, 1].map((v) => (v + 0.5) / 2);
    const got = await m.read(0);
    for (let r2 = 0; r2 < 4; r2++) row.forEach((v, c) => expect(got[r2 * 4 + c]).toBeCloseTo(v, 3));
    expect(m.label(0)).toBeNull();
    await m.close();
  });

  it('rejects inputs over different images and parses weights', async () => {
    const a = await store('c.pnm', ['x', 'y'], 2, [Array(4).fill(0), Array(4).fill(0)]);
    const b = await store('d.pnm', ['x', 'z'], 2, [Array(4).fill(0), Array(4).fill(0)]);
    await expect(blendMaps([{ path: a }, { path: b }], join(dir, 'cd.pnm'))).rejects.toThrow(/hold different images \(1 missing from .*d\.pnm: y; 1 not in .*c\.pnm: z\)/);
    await expect(blendMaps([{ path: a, weight: 0 }], join(dir, 'z.pnm'))).rejects.toThrow(/at least one positive weight/);
    expect(parseWeighted('a.pnm:0.4')).toEqual({ path: 'a.pnm', weight: 0.4 });
    expect(parseWeighted('/x/c:d.pnm')).toEqual({ path: '/x/c:d.pnm', weight: 1 });
  });
});
