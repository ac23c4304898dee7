/** The serving mask resize equals the inference module's `resizeMask` (SPEC section 4's rule). */
import { describe, expect, it } from 'vitest';
import { encodeRuns } from '../../src/data/rle.js';
import { resizeMask } from '../../src/scoring/resize.js';
import { upsampleMask, upsampleMaskAsync } from '../../src/scoring/upsample.js';
import { randomBytes } from '../serve/fixtures.js';

function blobMask(height: number, width: number, seed: number, density: number): Uint8Array {
  const noise = randomBytes(height * width, seed);
  const mask = new Uint8Array(height * width);
  // A random rectangle of random pixels (a bounding box smaller than the image), plus speckle.
  const r0 = noise[0]! % height;
  const c0 = noise[1]! % width;
  const r1 = Math.min(height - 1, r0 + (noise[2]! % height));
  const c1 = Math.min(width - 1, c0 + (noise[3]! % width));
  for (let r = r0; r <= r1; r++) for (let c = c0; c <= c1; c++) mask[r * width + c] = noise[r * width + c]! < 256 * density ? 1 : 0;
  return mask;
}

describe('upsampleMask', () => {
  it('is exactly resizeMask (bilinear, half-pixel centres, > 0.5) up, down, square or not, whole or sliced', async () => {
    const shapes: [number, number, number, number][] = [
      [64, 64, 1024, 1024],
      [64, 64, 128, 128],
      [32, 32, 100, 70],
      [64, 64, 48, 48],
      [64, 64, 64, 64],
      [7, 5, 30, 22],
    ];
    let seed = 1;
    for (const [h, w, oh, ow] of shapes) {
      for (const density of [0.2, 0.6, 1]) {
        const mask = blobMask(h, w, seed++, density);
        const expected = resizeMask(mask, h, w, oh, ow);
        const got = upsampleMask(mask, h, w, oh, ow);
        expect(Buffer.from(got.mask).equals(Buffer.from(expected)), `${h}x${w} -> ${oh}x${ow} density ${density}`).toBe(true);
        expect(got.area).toBe(expected.reduce((s, v) => s + v, 0));
        expect(Array.from(got.runs)).toEqual(Array.from(encodeRuns(expected, ow, oh)));
        const sliced = await upsampleMaskAsync(mask, h, w, oh, ow, 7);
        expect(Buffer.from(sliced.mask).equals(Buffer.from(expected))).toBe(true);
        expect(Array.from(sliced.runs)).toEqual(Array.from(got.runs));
      }
    }
  });

  it('handles empty and full masks and masks touching the borders', () => {
    expect(upsampleMask(new Uint8Array(16 * 16), 16, 16, 64, 64)).toEqual({ mask: new Uint8Array(64 * 64), area: 0, runs: new Int32Array(0) });
    const full = upsampleMask(new Uint8Array(16 * 16).fill(1), 16, 16, 64, 48);
    expect(full.area).toBe(64 * 48);
    expect(Array.from(full.runs)).toEqual([0, 64 * 48]); // one run, closed at the last pixel
    const corner = new Uint8Array(16 * 16);
    corner[0] = 1;
    corner[255] = 1;
    const expected = resizeMask(corner, 16, 16, 64, 64);
    const got = upsampleMask(corner, 16, 16, 64, 64);
    expect(Buffer.from(got.mask).equals(Buffer.from(expected))).toBe(true);
    expect(Array.from(got.runs)).toEqual(Array.from(encodeRuns(expected, 64, 64)));
    // a column-spanning mask: runs continue from one column's last row into the next one's first
    const band = new Uint8Array(16 * 16);
    for (let r = 0; r < 16; r++) band[r * 16 + 5] = band[r * 16 + 6] = 1;
    const bandExpected = resizeMask(band, 16, 16, 40, 40);
    expect(Array.from(upsampleMask(band, 16, 16, 40, 40).runs)).toEqual(Array.from(encodeRuns(bandExpected, 40, 40)));
  });
});
