/**
 * Synthetic pneumothorax regions. A pneumothorax is air between the chest wall and a lung that
 * has pulled away from it towards the hilum. Each region is described in a lung's own polar frame
 * around the point it collapses towards (`lungCentre`): angle 0 points laterally, -pi/2 up to the
 * apex. Along each ray the lung edge is pulled in from the chest wall (at distance R) to
 * `R * (1 - depth * bump)`, where `bump` rises smoothly from 0 at the edges of the angular window
 * to 1 at its centre: a crescent hugging the apex or the lateral wall, bounded on the inside by a
 * smooth convex curve (the visceral pleura, drawn as a thin bright line). The mask is the crescent.
 */
import type { Random } from '../../core/random.js';
import { lungCentre } from './anatomy.js';
import type { Anatomy } from './anatomy.js';

/** One pneumothorax region. */
export interface PneumothoraxRegion {
  /** 0: the image-left lung (patient's right); 1: the image-right lung. */
  lung: 0 | 1;
  /** Centre of the angular window (radians; 0 lateral, -pi/2 apex). */
  angle: number;
  /** Half-width of the angular window (radians). */
  spread: number;
  /** Depth at the window's centre as a fraction of the centre-to-wall distance (0-1). */
  depth: number;
}

/** Window limits: from over the apex (medial side) down to just above the costophrenic angle. */
const MIN_ANGLE = -2.25;
const MAX_ANGLE = 0.75;

function window(rng: Random, centreLo: number, centreHi: number, spreadLo: number, spreadHi: number): { angle: number; spread: number } {
  let angle = rng.uniform(centreLo, centreHi);
  let spread = rng.uniform(spreadLo, spreadHi);
  // Keep the window inside the apex-to-lateral sector.
  const lo = Math.max(MIN_ANGLE, angle - spread);
  const hi = Math.min(MAX_ANGLE, angle + spread);
  angle = (lo + hi) / 2;
  spread = (hi - lo) / 2;
  return { angle, spread };
}

/** A depth drawn log-uniformly between `lo` and `hi`: small regions are as common as large. */
function depthBetween(rng: Random, lo: number, hi: number): number {
  return Math.exp(rng.uniform(Math.log(lo), Math.log(hi)));
}

/**
 * Samples the regions of a positive image: one region (72%), two (20%) or three (8%). Regions in
 * the same lung get disjoint windows (apical and lower lateral), so each is its own connected
 * area, as the separate rows of SIIM's train labels are.
 */
export function samplePneumothorax(rng: Random): PneumothoraxRegion[] {
  const u = rng.next();
  const count = u < 0.72 ? 1 : u < 0.92 ? 2 : 3;
  const lung: 0 | 1 = rng.bool() ? 0 : 1;
  if (count === 1) {
    const depth = depthBetween(rng, 0.08, 0.6);
    // Larger collapses also extend further around the wall.
    const w = window(rng, -1.75, 0.05, 0.4 + depth * 0.8, 0.7 + depth * 1.5);
    return [{ lung, ...w, depth }];
  }
  const regions: PneumothoraxRegion[] = [
    { lung, ...window(rng, -1.75, -1.25, 0.25, 0.4), depth: depthBetween(rng, 0.07, 0.3) },
    { lung, ...window(rng, -0.15, 0.35, 0.25, 0.38), depth: depthBetween(rng, 0.07, 0.25) },
  ];
  if (count === 3) {
    const other: 0 | 1 = lung === 0 ? 1 : 0;
    regions.push({ lung: other, ...window(rng, -1.6, -0.3, 0.3, 0.7), depth: depthBetween(rng, 0.07, 0.35) });
  } else if (rng.bool(0.4)) {
    // Bilateral instead of two pockets in one lung.
    const second = regions[1] as PneumothoraxRegion;
    second.lung = lung === 0 ? 1 : 0;
  }
  return regions;
}

/** The rasterised regions of one image at `size x size`. */
export interface PneumothoraxRaster {
  /** One 0/1 mask per region, row-major. */
  masks: Uint8Array[];
  /** How much of each pixel is pneumothorax air (0-1, anti-aliased). Only with `planes`. */
  air?: Float32Array;
  /** The visceral pleural line's strength (0-1). Only with `planes`. */
  line?: Float32Array;
}

const RAY_STEP = 0.004;

/**
 * Rasterises regions against the lung labels (from `lungLabels`). With `planes` (two zeroed
 * `size * size` planes), also fills the anti-aliased air and pleural-line planes that the
 * renderer composites.
 */
export function rasterizePneumothorax(
  anatomy: Anatomy,
  regions: readonly PneumothoraxRegion[],
  labels: Uint8Array,
  size: number,
  planes?: { air: Float32Array; line: Float32Array },
): PneumothoraxRaster {
  const masks: Uint8Array[] = [];
  const air = planes?.air;
  const line = planes?.line;
  const lineHalf = Math.max(1.25, 0.0025 * size);
  for (const region of regions) {
    const mask = new Uint8Array(size * size);
    masks.push(mask);
    const lung = anatomy.lungs[region.lung];
    const label = region.lung + 1;
    const centre = lungCentre(lung, anatomy.midX);
    const cx = centre.x * size;
    const cy = centre.y * size;
    const side = lung.side;
    // Distance from the centre to the chest wall along each ray of the window.
    const lo = region.angle - region.spread;
    const bins = Math.max(2, Math.ceil((2 * region.spread) / RAY_STEP) + 1);
    const wall = new Float32Array(bins);
    for (let b = 0; b < bins; b++) {
      const phi = lo + b * RAY_STEP;
      const dx = Math.cos(phi) * side;
      const dy = Math.sin(phi);
      let t = 0;
      for (;;) {
        const px = Math.floor(cx + dx * (t + 0.5));
        const py = Math.floor(cy + dy * (t + 0.5));
        if (px < 0 || py < 0 || px >= size || py >= size || labels[py * size + px] !== label) break;
        t += 0.5;
      }
      wall[b] = t + 0.5;
    }
    // Only pixels within the window's bounding box can be inside.
    let maxR = 0;
    for (let b = 0; b < bins; b++) maxR = Math.max(maxR, wall[b] as number);
    const x0 = Math.max(0, Math.floor(cx - maxR - 2));
    const x1 = Math.min(size - 1, Math.ceil(cx + maxR + 2));
    const y0 = Math.max(0, Math.floor(cy - maxR - 2));
    const y1 = Math.min(size - 1, Math.ceil(cy + maxR + 2));
    for (let py = y0; py <= y1; py++) {
      const ly = py + 0.5 - cy;
      for (let px = x0; px <= x1; px++) {
        const p = py * size + px;
        if (labels[p] !== label) continue;
        const lx = (px + 0.5 - cx) * side;
        const phi = Math.atan2(ly, lx);
        const f = (phi - lo) / RAY_STEP;
        if (f < 0 || f > bins - 1) continue;
        const rel = (phi - region.angle) / region.spread;
        const c = Math.cos((Math.PI / 2) * rel);
        const bump = c * c;
        const i = Math.min(bins - 2, Math.floor(f));
        const R = (wall[i] as number) + ((wall[i + 1] as number) - (wall[i] as number)) * (f - i);
        const edge = R * (1 - region.depth * bump);
        const r = Math.sqrt(lx * lx + ly * ly);
        // Half a pixel of margin: the crescent's tapering tips end cleanly instead of as
        // one-pixel slivers along the wall.
        if (r - edge > 0.5) mask[p] = 1;
        if (air && line) {
          const a = Math.min(1, Math.max(0, r - edge));
          if (a > (air[p] as number)) air[p] = a;
          const fade = Math.min(1, bump / 0.3);
          // The visceral pleura is the lung's edge: the line lies on the lung side of the air.
          const l = Math.max(0, 1 - Math.abs(r - edge + 0.5 * lineHalf) / lineHalf) * fade;
          if (l > (line[p] as number)) line[p] = l;
        }
      }
    }
  }
  return air && line ? { masks, air, line } : { masks };
}
