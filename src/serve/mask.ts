/**
 * The serving path's mask resize: a 0/1 mask at the model's size to the input image's size,
 * bilinear with half-pixel centres and binarised at 0.5 — exactly `inference/resize.ts`'s
 * `resizeMask` — but computed only over the output rows and columns that the mask's bounding box
 * can reach. A pneumothorax covers a few percent of the image, so a 1024 x 1024 mask costs a
 * fraction of the full 1M-pixel pass on the event loop (and nothing when the mask is empty).
 */

/** Per output index: the two source indices and the weight of the second (as resize.ts computes them). */
function axis(outSize: number, inSize: number): { i0: Int32Array; i1: Int32Array; f: Float32Array } {
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const f = new Float32Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const x = Math.max(0, (o + 0.5) * scale - 0.5);
    const a = Math.min(Math.floor(x), inSize - 1);
    i0[o] = a;
    i1[o] = Math.min(a + 1, inSize - 1);
    f[o] = x - a;
  }
  return { i0, i1, f };
}

/** The output range [first, last] whose two source indices touch [lo, hi], or undefined. */
function reach(ax: { i0: Int32Array; i1: Int32Array }, lo: number, hi: number): [number, number] | undefined {
  let first = -1;
  let last = -1;
  for (let o = 0; o < ax.i0.length; o++) {
    if ((ax.i0[o]! >= lo && ax.i0[o]! <= hi) || (ax.i1[o]! >= lo && ax.i1[o]! <= hi)) {
      if (first < 0) first = o;
      last = o;
    }
  }
  return first < 0 ? undefined : [first, last];
}

/** The resized mask, its area and its runs in column-major order (`rle.Runs`: start, end, ...). */
export interface UpsampledMask {
  mask: Uint8Array;
  area: number;
  runs: Int32Array;
}

/**
 * Resizes a row-major 0/1 (any non-zero = 1) `height` x `width` mask to `outHeight` x `outWidth`,
 * bilinear with half-pixel centres, binarised at 0.5. Walks the output column by column over the
 * reachable box, so the SIIM runs (column-major) come out of the same pass: `rle.formatRuns(runs)`
 * is the mask's RLE.
 */
export function upsampleMask(mask: Uint8Array, height: number, width: number, outHeight: number, outWidth: number): UpsampledMask {
  const out = new Uint8Array(outHeight * outWidth);
  let r0 = height;
  let r1 = -1;
  let c0 = width;
  let c1 = -1;
  for (let r = 0; r < height; r++) {
    const row = r * width;
    for (let c = 0; c < width; c++) {
      if (mask[row + c] !== 0) {
        if (r < r0) r0 = r;
        r1 = r;
        if (c < c0) c0 = c;
        if (c > c1) c1 = c;
      }
    }
  }
  if (r1 < 0) return { mask: out, area: 0, runs: new Int32Array(0) };
  const ys = axis(outHeight, height);
  const xs = axis(outWidth, width);
  const [rowFirst, rowLast] = reach(ys, r0, r1)!;
  const [colFirst, colLast] = reach(xs, c0, c1)!;
  const value = new Float32Array(1); // rounds each interpolated value to float32, as resize.ts stores it
  let runs = new Int32Array(256);
  let n = 0;
  const push = (index: number): void => {
    if (n === runs.length) {
      const grown = new Int32Array(runs.length * 2);
      grown.set(runs);
      runs = grown;
    }
    runs[n++] = index;
  };
  let area = 0;
  let inRun = 0;
  for (let c = colFirst; c <= colLast; c++) {
    const column = c * outHeight;
    if (inRun === 1 && rowFirst > 0) {
      push(column); // rows above rowFirst are empty
      inRun = 0;
    }
    const x0 = xs.i0[c]!;
    const x1 = xs.i1[c]!;
    const fx = xs.f[c]!;
    for (let o = rowFirst; o <= rowLast; o++) {
      const row0 = ys.i0[o]! * width;
      const row1 = ys.i1[o]! * width;
      const a = mask[row0 + x0] ? 1 : 0;
      const b = mask[row0 + x1] ? 1 : 0;
      const d = mask[row1 + x0] ? 1 : 0;
      const e = mask[row1 + x1] ? 1 : 0;
      let bit: number;
      const corners = a + b + d + e;
      if (corners === 0 || corners === 4) {
        bit = corners >> 2;
      } else {
        const top = a + (b - a) * fx;
        const bottom = d + (e - d) * fx;
        value[0] = top + (bottom - top) * ys.f[o]!;
        bit = value[0]! > 0.5 ? 1 : 0;
      }
      if (bit === 1) {
        out[o * outWidth + c] = 1;
        area++;
      }
      if (bit !== inRun) {
        push(column + o);
        inRun = bit;
      }
    }
    if (inRun === 1 && rowLast < outHeight - 1) {
      push(column + rowLast + 1);
      inRun = 0;
    }
  }
  if (inRun === 1) push((colLast + 1) * outHeight);
  return { mask: out, area, runs: runs.subarray(0, n) };
}
