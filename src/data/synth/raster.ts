/**
 * Small rasterisation helpers for the synthetic radiographs, all on `Float32Array` planes of
 * `size x size` (row-major) and all O(pixels touched): separable box blur, smooth value noise,
 * anti-aliased capsules (vessel segments) and curved bands (ribs, clavicles).
 */
import type { Random } from '../../core/random.js';

/** Hermite smoothstep of `x` between `edge0` and `edge1` (0 below, 1 above). */
export function smoothstep(edge0: number, edge1: number, x: number): number {
  const t = Math.min(1, Math.max(0, (x - edge0) / (edge1 - edge0)));
  return t * t * (3 - 2 * t);
}

/** Clamps `x` into [lo, hi]. */
export function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

/**
 * Box-blurs a plane in place with radius `r` pixels (window 2r+1), horizontally then vertically,
 * with running sums (cost independent of r); edges are clamped. The vertical pass runs row by row
 * over column sums, so both passes read memory in order. `scratch` (same length as the plane)
 * avoids an allocation.
 */
export function boxBlur(plane: Float32Array, width: number, height: number, r: number, scratch?: Float32Array): void {
  if (r < 1) return;
  const n = width * height;
  const out = scratch && scratch.length >= n ? scratch : new Float32Array(n);
  const inv = 1 / (2 * r + 1);
  const lastX = width - 1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    let sum = 0;
    for (let k = -r; k <= r; k++) sum += plane[row + (k < 0 ? 0 : k > lastX ? lastX : k)] as number;
    for (let x = 0; x < width; x++) {
      out[row + x] = sum * inv;
      const add = x + r + 1;
      const sub = x - r;
      sum += (plane[row + (add > lastX ? lastX : add)] as number) - (plane[row + (sub < 0 ? 0 : sub)] as number);
    }
  }
  // Vertical: column sums over the window, slid down one row at a time.
  const lastY = height - 1;
  const sums = new Float64Array(width);
  for (let k = -r; k <= r; k++) {
    const row = (k < 0 ? 0 : k > lastY ? lastY : k) * width;
    for (let x = 0; x < width; x++) sums[x] = (sums[x] as number) + (out[row + x] as number);
  }
  for (let y = 0; y < height; y++) {
    const row = y * width;
    const add = y + r + 1;
    const sub = y - r;
    const addRow = (add > lastY ? lastY : add) * width;
    const subRow = (sub < 0 ? 0 : sub) * width;
    for (let x = 0; x < width; x++) {
      const sum = sums[x] as number;
      plane[row + x] = sum * inv;
      sums[x] = sum + (out[addRow + x] as number) - (out[subRow + x] as number);
    }
  }
}

/**
 * Adds smooth value noise to the rectangle [x0, x1) x [y0, y1) of a `size x size` plane: a grid
 * of `cells x cells` uniform values in [-1, 1] over the whole image, interpolated with smoothstep
 * weights, times `amplitude`.
 */
export function addValueNoise(
  plane: Float32Array,
  size: number,
  cells: number,
  amplitude: number,
  rng: Random,
  area: { x0: number; x1: number; y0: number; y1: number } = { x0: 0, x1: size, y0: 0, y1: size },
): void {
  const n = cells + 2;
  const grid = new Float32Array(n * n);
  for (let i = 0; i < grid.length; i++) grid[i] = rng.next() * 2 - 1;
  const scale = cells / size;
  const w = new Float32Array(size);
  const ix = new Int32Array(size);
  for (let x = 0; x < size; x++) {
    const g = x * scale;
    const i = Math.floor(g);
    const f = g - i;
    ix[x] = i;
    w[x] = f * f * (3 - 2 * f);
  }
  for (let y = Math.max(0, area.y0); y < Math.min(size, area.y1); y++) {
    const j = ix[y] as number;
    const fy = w[y] as number;
    const r0 = j * n;
    const r1 = r0 + n;
    const row = y * size;
    for (let x = Math.max(0, area.x0); x < Math.min(size, area.x1); x++) {
      const i = ix[x] as number;
      const fx = w[x] as number;
      const g00 = grid[r0 + i] as number;
      const g10 = grid[r1 + i] as number;
      const a = g00 + ((grid[r0 + i + 1] as number) - g00) * fx;
      const b = g10 + ((grid[r1 + i + 1] as number) - g10) * fx;
      plane[row + x] = (plane[row + x] as number) + amplitude * (a + (b - a) * fy);
    }
  }
}

/**
 * Draws a capsule (a segment with round ends, radius `r0` at the start tapering to `r1`) into
 * `plane`, keeping per pixel the maximum of the existing value and `value * profile`, where the
 * profile is a rounded cross-section (a vessel seen side-on) with a one-pixel soft edge.
 */
export function drawCapsule(
  plane: Float32Array,
  size: number,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
  r0: number,
  r1: number,
  value: number,
): void {
  const rMax = Math.max(r0, r1) + 1;
  const minX = Math.max(0, Math.floor(Math.min(x0, x1) - rMax));
  const maxX = Math.min(size - 1, Math.ceil(Math.max(x0, x1) + rMax));
  const minY = Math.max(0, Math.floor(Math.min(y0, y1) - rMax));
  const maxY = Math.min(size - 1, Math.ceil(Math.max(y0, y1) + rMax));
  const dx = x1 - x0;
  const dy = y1 - y0;
  const len2 = dx * dx + dy * dy || 1e-9;
  for (let y = minY; y <= maxY; y++) {
    const row = y * size;
    for (let x = minX; x <= maxX; x++) {
      const px = x - x0;
      const py = y - y0;
      const t = clamp((px * dx + py * dy) / len2, 0, 1);
      const ex = px - t * dx;
      const ey = py - t * dy;
      const d = Math.sqrt(ex * ex + ey * ey);
      const r = r0 + (r1 - r0) * t;
      if (d >= r + 0.5) continue;
      const q = d / (r + 0.5);
      const v = value * Math.sqrt(1 - q * q);
      if (v > (plane[row + x] as number)) plane[row + x] = v;
    }
  }
}

/**
 * Adds a curved band to `plane`: for x from `xStart` to `xEnd` (either order), the band is centred
 * on `centre(x)` (a y in pixels) with half-thickness `half(x)`; its cross-section is brighter at
 * the edges (cortical bone) and fades out over the last `fade` fraction of its length.
 */
export function addBand(
  plane: Float32Array,
  size: number,
  xStart: number,
  xEnd: number,
  centre: (x: number) => number,
  half: (x: number) => number,
  value: number,
  fade = 0.15,
): void {
  const lo = Math.max(0, Math.round(Math.min(xStart, xEnd)));
  const hi = Math.min(size - 1, Math.round(Math.max(xStart, xEnd)));
  const length = Math.max(1, hi - lo);
  for (let x = lo; x <= hi; x++) {
    const along = Math.abs(x - xStart) / length;
    const ends = Math.min(1, (1 - along) / fade, along / 0.05);
    if (ends <= 0) continue;
    const yc = centre(x);
    const h = half(x);
    const y0 = Math.max(0, Math.floor(yc - h - 1));
    const y1 = Math.min(size - 1, Math.ceil(yc + h + 1));
    for (let y = y0; y <= y1; y++) {
      const d = Math.abs(y - yc) / h;
      if (d >= 1.15) continue;
      const edge = d > 1 ? (1.15 - d) / 0.15 : 1;
      const cortex = 0.65 + 0.35 * d * d * d * d;
      plane[y * size + x] = (plane[y * size + x] as number) + value * ends * edge * cortex;
    }
  }
}
