/**
 * Square-kernel dilation of binary masks (data.maskDilation, the 42nd place's classifier) against a
 * brute-force reference with OpenCV's anchor (the kernel centre, floor(k / 2)), at the borders,
 * for odd and even kernels; and the loader applying it before augmentation.
 */
import { describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { dilateMasks } from '../../src/data/dilate.js';

function reference(mask: Uint8Array, h: number, w: number, k: number): Uint8Array {
  const out = new Uint8Array(h * w);
  const a = Math.floor(k / 2);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let set = false;
      for (let dy = -a; dy <= k - 1 - a && !set; dy++) {
        for (let dx = -a; dx <= k - 1 - a && !set; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < h && xx >= 0 && xx < w && mask[yy * w + xx] !== 0) set = true;
        }
      }
      out[y * w + x] = set ? 255 : 0;
    }
  }
  return out;
}

describe('dilateMasks', () => {
  it('equals the brute-force square dilation for odd and even kernels, borders included', () => {
    const rng = new Random(3);
    for (const [h, w, k] of [[17, 23, 1], [17, 23, 3], [17, 23, 4], [20, 9, 8], [12, 12, 30]] as const) {
      const masks = new Uint8Array(2 * h * w);
      for (let i = 0; i < masks.length; i++) masks[i] = rng.next() < 0.03 ? 255 : 0;
      masks[0] = 255; // a corner pixel
      const got = dilateMasks(masks, 2, h, w, k);
      for (let m = 0; m < 2; m++) {
        const plane = masks.subarray(m * h * w, (m + 1) * h * w);
        expect(Array.from(got.subarray(m * h * w, (m + 1) * h * w)), `${h}x${w} k${k} mask ${m}`).toEqual(Array.from(reference(plane, h, w, k)));
      }
    }
  });

  it('an empty mask stays empty; the kernel is anchored as OpenCV (even: one more pixel before)', () => {
    expect(Array.from(dilateMasks(new Uint8Array(9), 1, 3, 3, 5))).toEqual(new Array(9).fill(0));
    const one = new Uint8Array(7);
    one[3] = 1;
    // k = 4: before 2, after 1: a set pixel at 3 sets 2..5 (x - 2 <= 3 <= x + 1)
    expect(Array.from(dilateMasks(one, 1, 1, 7, 4))).toEqual([0, 0, 255, 255, 255, 255, 0]);
  });

  it('rejects bad sizes and kernels, naming them', () => {
    expect(() => dilateMasks(new Uint8Array(5), 1, 2, 2, 3)).toThrow(/holds 5 bytes, but 1 masks of 2 x 2 need 4/);
    expect(() => dilateMasks(new Uint8Array(4), 1, 2, 2, 0)).toThrow(/kernel/);
  });
});
