/**
 * The serving path's mask resize: a 0/1 mask at the model's size to the input image's size,
 * bilinear with half-pixel centres and binarised at 0.5 — exactly `resizeMask`
 * (resize.ts) — but computed only over the output rows and columns that the mask's bounding box
 * can reach. A pneumothorax covers a few percent of the image, so a 1024 x 1024 mask costs a
 * fraction of the full 1M-pixel pass on the event loop (and nothing when the mask is empty). The
 * SIIM runs come from a column-major copy written in the same pass, read a word at a time.
 */

import type { Runs } from '../data/rle.js';
import { bilinearAxis } from './resize.js';
import type { BilinearAxis } from './resize.js';

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
  runs: Runs;
}

interface Plan {
  mask: Uint8Array;
  width: number;
  outWidth: number;
  outHeight: number;
  out: Uint8Array;
  /** The same pixels column-major (index column * outHeight + row), for the runs. */
  outT: Uint8Array;
  rowAny: Uint8Array;
  ys: BilinearAxis;
  xs: BilinearAxis;
  rows: [number, number];
  /** Output columns in spans sharing their two source columns: [first, last, x0, x1] each. */
  spans: Int32Array;
}

/** The source's bounding box and the output box it reaches, or undefined for an empty mask. */
function plan(mask: Uint8Array, height: number, width: number, outHeight: number, outWidth: number, out: Uint8Array): Plan | undefined {
  const rowAny = new Uint8Array(height);
  let r0 = height;
  let r1 = -1;
  let c0 = width;
  let c1 = -1;
  for (let r = 0; r < height; r++) {
    const row = r * width;
    for (let c = 0; c < width; c++) {
      if (mask[row + c] !== 0) {
        rowAny[r] = 1;
        if (r < r0) r0 = r;
        r1 = r;
        if (c < c0) c0 = c;
        if (c > c1) c1 = c;
      }
    }
  }
  if (r1 < 0) return undefined;
  const ys = bilinearAxis(outHeight, height);
  const xs = bilinearAxis(outWidth, width);
  const [colFirst, colLast] = reach(xs, c0, c1)!;
  const spans: number[] = [];
  for (let c = colFirst; c <= colLast; c++) {
    const n = spans.length;
    if (n > 0 && spans[n - 2] === xs.i0[c] && spans[n - 1] === xs.i1[c]) spans[n - 3] = c;
    else spans.push(c, c, xs.i0[c]!, xs.i1[c]!);
  }
  return {
    mask,
    width,
    outWidth,
    outHeight,
    out,
    outT: new Uint8Array(out.length),
    rowAny,
    ys,
    xs,
    rows: reach(ys, r0, r1)!,
    spans: Int32Array.from(spans),
  };
}

/**
 * Fills output rows [from, to] of the plan; returns the pixels set. Column spans whose four source
 * neighbours agree are skipped or filled whole; only the spans on an edge are interpolated.
 */
function fillRows(p: Plan, from: number, to: number): number {
  const { mask, width, outWidth, outHeight, out, outT, rowAny, ys, spans } = p;
  const xf = p.xs.f;
  const value = new Float32Array(1); // rounds each interpolated value to float32, as resize.ts stores it
  let area = 0;
  for (let o = from; o <= to; o++) {
    const s0 = ys.i0[o]!;
    const s1 = ys.i1[o]!;
    if (rowAny[s0] === 0 && rowAny[s1] === 0) continue;
    const row0 = s0 * width;
    const row1 = s1 * width;
    const fy = ys.f[o]!;
    const base = o * outWidth;
    for (let k = 0; k < spans.length; k += 4) {
      const first = spans[k]!;
      const last = spans[k + 1]!;
      const x0 = spans[k + 2]!;
      const x1 = spans[k + 3]!;
      const a = mask[row0 + x0] ? 1 : 0;
      const b = mask[row0 + x1] ? 1 : 0;
      const d = mask[row1 + x0] ? 1 : 0;
      const e = mask[row1 + x1] ? 1 : 0;
      const corners = a + b + d + e;
      if (corners === 0) continue;
      for (let c = first; c <= last; c++) {
        if (corners !== 4) {
          const fx = xf[c]!;
          const top = a + (b - a) * fx;
          const bottom = d + (e - d) * fx;
          value[0] = top + (bottom - top) * fy;
          if (!(value[0]! > 0.5)) continue;
        }
        out[base + c] = 1;
        outT[c * outHeight + o] = 1;
        area++;
      }
    }
  }
  return area;
}

/** Runs (start, end, ...) of a column-major 0/1 buffer, a word at a time where nothing changes. */
function runsOf(outT: Uint8Array): Runs {
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
  const words = new Int32Array(outT.buffer, outT.byteOffset, outT.length >> 2);
  let inRun = 0;
  let i = 0;
  while (i < outT.length) {
    if ((i & 3) === 0 && i + 4 <= outT.length && words[i >> 2] === (inRun === 0 ? 0 : 0x01010101)) {
      i += 4; // four bytes that continue the current state
      continue;
    }
    const v = outT[i]!;
    if (v !== inRun) {
      push(i);
      inRun = v;
    }
    i++;
  }
  if (inRun === 1) push(outT.length);
  return runs.subarray(0, n);
}

const EMPTY_RUNS: Runs = new Int32Array(0);

/**
 * Resizes a row-major 0/1 (any non-zero = 1) `height` x `width` mask to `outHeight` x `outWidth`,
 * bilinear with half-pixel centres, binarised at 0.5, with its SIIM runs
 * (`rle.formatRuns(runs)` is its RLE). Pixels whose four source neighbours agree are copied; only
 * edges are interpolated; output rows whose two source rows are empty are skipped.
 */
export function upsampleMask(mask: Uint8Array, height: number, width: number, outHeight: number, outWidth: number): UpsampledMask {
  const out = new Uint8Array(outHeight * outWidth);
  const p = plan(mask, height, width, outHeight, outWidth, out);
  if (p === undefined) return { mask: out, area: 0, runs: EMPTY_RUNS };
  const area = fillRows(p, p.rows[0], p.rows[1]);
  return { mask: out, area, runs: area === 0 ? EMPTY_RUNS : runsOf(p.outT) };
}

/**
 * {@link upsampleMask} in slices of `rowsPerSlice` output rows with the event loop served between
 * them (a server's post-processing of a large mask never holds the loop for the whole image).
 */
export async function upsampleMaskAsync(
  mask: Uint8Array,
  height: number,
  width: number,
  outHeight: number,
  outWidth: number,
  rowsPerSlice = 128,
): Promise<UpsampledMask> {
  const out = new Uint8Array(outHeight * outWidth);
  const p = plan(mask, height, width, outHeight, outWidth, out);
  if (p === undefined) return { mask: out, area: 0, runs: EMPTY_RUNS };
  let area = 0;
  for (let from = p.rows[0]; from <= p.rows[1]; from += rowsPerSlice) {
    if (from > p.rows[0]) await new Promise<void>((resolve) => setImmediate(resolve));
    area += fillRows(p, from, Math.min(p.rows[1], from + rowsPerSlice - 1));
  }
  if (area === 0) return { mask: out, area: 0, runs: EMPTY_RUNS };
  return { mask: out, area, runs: runsOf(p.outT) };
}
