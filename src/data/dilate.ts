/**
 * Binary mask dilation with a square kernel, as OpenCV's `cv2.dilate(mask, np.ones((k, k)))` with
 * its default anchor (the kernel's centre, `floor(k / 2)`): a pixel is set when any set pixel lies
 * within `floor(k / 2)` before it or `k - 1 - floor(k / 2)` after it, along rows and then columns
 * (a square kernel is separable). Linear in the pixels whatever the kernel size: each line keeps the
 * index of the last set pixel seen. The 42nd place trained its classifier on masks dilated by a
 * 128 x 128 kernel (`data.maskDilation`).
 */
import { assertInteger, invalidParameterError } from '../core/validate.js';

/**
 * Dilates `count` binary masks of `height` x `width` (row-major, one after another; any non-zero
 * value is set) by a `kernel` x `kernel` square. Returns new masks of 0 and `on` (default 255).
 * `kernel` 1 copies (binarised).
 */
export function dilateMasks(masks: Uint8Array, count: number, height: number, width: number, kernel: number, on = 255): Uint8Array {
  assertInteger('count', count, 0);
  assertInteger('height', height, 1);
  assertInteger('width', width, 1);
  assertInteger('kernel', kernel, 1, 1 << 15);
  assertInteger('on', on, 1, 255);
  if (!(masks instanceof Uint8Array)) throw invalidParameterError('masks', 'a Uint8Array', masks);
  if (masks.length !== count * height * width) {
    throw new RangeError(`masks holds ${masks.length} bytes, but ${count} masks of ${height} x ${width} need ${count * height * width}`);
  }
  const before = Math.floor(kernel / 2);
  const after = kernel - 1 - before;
  const rows = new Uint8Array(masks.length);
  const out = new Uint8Array(masks.length);
  // One line: out[x] is set when the last set input at or before min(x + after, n - 1) is >= x - before.
  const line = (src: Uint8Array, dst: Uint8Array, start: number, stride: number, n: number): void => {
    let last = -Infinity;
    let scanned = -1;
    for (let x = 0; x < n; x++) {
      const reach = Math.min(x + after, n - 1);
      while (scanned < reach) {
        scanned++;
        if (src[start + scanned * stride] !== 0) last = scanned;
      }
      dst[start + x * stride] = last >= x - before ? on : 0;
    }
  };
  const plane = height * width;
  for (let m = 0; m < count; m++) {
    const base = m * plane;
    for (let y = 0; y < height; y++) line(masks, rows, base + y * width, 1, width);
    for (let x = 0; x < width; x++) line(rows, out, base + x, width, height);
  }
  return out;
}
