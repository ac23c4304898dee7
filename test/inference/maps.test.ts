import { mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { decodeMap, encodeMap, fromHalf, MapReader, MapWriter, toHalf } from '../../src/inference/maps.js';

const dir = await mkdtemp(join(tmpdir(), 'pn-maps-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

function randomMaps(seed: number, n: number, pixels: number): Float32Array[] {
  const rng = new Random(seed);
  return Array.from({ length: n }, () => Float32Array.from({ length: pixels }, () => rng.next()));
}

describe('float16', () => {
  it('rounds to nearest even and round-trips every half', () => {
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const v = fromHalf(h);
      if (Number.isNaN(v) ? !Number.isNaN(fromHalf(toHalf(v))) : toHalf(v) !== h) wrong.push(h);
    }
    expect(wrong).toEqual([]);
    expect(toHalf(1)).toBe(0x3c00);
    expect(toHalf(0.1)).toBe(0x2e66);
    expect(toHalf(1 + 2 ** -11)).toBe(0x3c00); // a tie rounds to even
    expect(toHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(toHalf(65520)).toBe(0x7c00);
    expect(toHalf(2 ** -25)).toBe(0); // tie to even at the smallest subnormal
    expect(toHalf(3 * 2 ** -26)).toBe(1);
  });

  it('encodes probabilities in both dtypes', () => {
    const p = new Float32Array([0, 0.2, 0.5, 0.999, 1, 1.2, -0.1]);
    expect([...encodeMap(p, 'uint8')]).toEqual([0, 51, 128, 255, 255, 255, 0]);
    const back = decodeMap(encodeMap(p, 'float16'), 'float16');
    p.forEach((v, i) => expect(Math.abs(back[i]! - v)).toBeLessThan(1e-3));
  });
});

describe('map store', () => {
  const h = 16;
  const w = 12;
  const ids = Array.from({ length: 7 }, (_, i) => `img${i}`);
  const maps = randomMaps(5, ids.length, h * w);

  for (const dtype of ['uint8', 'float16'] as const) {
    it(`round-trips ${dtype} maps, labels and the producer`, async () => {
      const path = join(dir, `rt-${dtype}.pnm`);
      const writer = await MapWriter.create(path, { ids, height: h, width: w, dtype, producer: { models: ['a.ckpt'], tta: true } });
      for (const i of [3, 0, 6, 1, 2, 5, 4]) await writer.write(i, maps[i]!, i === 2 ? 0.75 : undefined);
      await writer.close();
      expect((await stat(path)).size).toBe(writer.header.layout.maps + ids.length * h * w * (dtype === 'uint8' ? 1 : 2));
      const reader = await MapReader.open(path);
      expect(reader.ids).toEqual(ids);
      expect(reader.producer).toEqual({ models: ['a.ckpt'], tta: true });
      expect(reader.label('img2')).toBe(0.75);
      expect(reader.label(0)).toBeNull();
      for (let i = 0; i < ids.length; i++) {
        const back = await reader.read(ids[i]!);
        const tol = dtype === 'uint8' ? 0.5 / 255 + 1e-7 : 5e-4;
        for (let k = 0; k < back.length; k++) expect(Math.abs(back[k]! - maps[i]![k]!)).toBeLessThanOrEqual(tol);
      }
      const raw = await reader.readForSearch(2, 3);
      expect(raw.length).toBe(3 * h * w);
      if (dtype === 'uint8') expect(raw[h * w]).toBe(Math.round(maps[3]![0]! * 255));
      await expect(reader.read('nope')).rejects.toThrow(/no map for image nope/);
      await reader.close();
    });
  }

  it('resumes a partial file and refuses a different one', async () => {
    const path = join(dir, 'partial.pnm');
    const first = await MapWriter.create(path, { ids, height: h, width: w, producer: { run: 1 } });
    await first.write(0, maps[0]!);
    await first.write(4, maps[4]!);
    await first.close();
    await expect(MapReader.open(path)).rejects.toThrow(/5 of 7 maps were never written .*img1, img2, img3, img5, img6/);
    const partial = await MapReader.open(path, { requireComplete: false });
    expect(partial.complete).toBe(false);
    await partial.close();
    const again = await MapWriter.create(path, { ids, height: h, width: w, producer: { run: 1 } });
    expect(again.pending()).toEqual([1, 2, 3, 5, 6]);
    for (const i of again.pending()) await again.write(i, maps[i]!);
    await again.close();
    const reader = await MapReader.open(path);
    expect(reader.complete).toBe(true);
    expect((await reader.read(4))[7]).toBeCloseTo(Math.round(maps[4]![7]! * 255) / 255, 6);
    await reader.close();
    await expect(MapWriter.create(path, { ids, height: h, width: w, producer: { run: 2 } })).rejects.toThrow(/already holds other maps/);
    const fresh = await MapWriter.create(path, { ids: ids.slice(0, 2), height: h, width: w, overwrite: true });
    expect(fresh.pending()).toEqual([0, 1]);
    await fresh.close();
  });

  it('names a truncated or foreign file', async () => {
    const path = join(dir, 'trunc.pnm');
    const writer = await MapWriter.create(path, { ids, height: h, width: w });
    await writer.close();
    await truncate(path, 300);
    await expect(MapReader.open(path)).rejects.toThrow(/truncated/);
    await expect(MapReader.open(new URL(import.meta.url).pathname)).rejects.toThrow(/not a pneumo-native map file/);
    // a foreign file at the output: an error naming it, replaced with overwrite
    const foreign = join(dir, 'foreign.pnm');
    await writeFile(foreign, 'not maps');
    await expect(MapWriter.create(foreign, { ids, height: h, width: w })).rejects.toThrow(/foreign\.pnm: not a pneumo-native map file .*pass --overwrite/);
    const replaced = await MapWriter.create(foreign, { ids, height: h, width: w, overwrite: true });
    expect(replaced.pending()).toHaveLength(ids.length);
    await replaced.close();
    await expect(MapWriter.create(join(dir, 'x.pnm'), { ids: ['a', 'a'], height: 2, width: 2 })).rejects.toThrow(/distinct image ids/);
  });
});
