/**
 * The anatomy of one synthetic chest radiograph (PA view, MONOCHROME2: bright = dense), drawn
 * from a seeded stream. Everything is in normalised image coordinates (x right, y down, both in
 * [0, 1]) so that one description renders at any size.
 *
 * The lung fields are the part the pneumothorax depends on, so their shape is an explicit,
 * testable function (`insideLung`): a rounded apex (the upper part of an ellipse), a lateral wall
 * that widens slightly downwards, a straight medial border along the mediastinum, and a
 * diaphragm dome that meets the lateral wall in a sharp costophrenic angle.
 */
import type { Random } from '../../core/random.js';

/** One lung field. `side` is -1 for the image-left lung (patient's right), +1 for image-right. */
export interface Lung {
  side: -1 | 1;
  /** Top of the apex. */
  apexY: number;
  /** Distance from the midline of the apex dome's centre. */
  domeX: number;
  /** Where the apex dome (upper half-ellipse) ends and the straight walls begin. */
  domeBottomY: number;
  /** Distance from the midline of the medial border. */
  medial: number;
  /** Distance from the midline of the lateral wall at `domeBottomY`. */
  lateral: number;
  /** Outward widening of the lateral wall per unit of y below `domeBottomY`. */
  lateralSlope: number;
  /** The costophrenic angle: the lung's lowest point, at the lateral wall. */
  baseY: number;
  /** How far the diaphragm dome rises above `baseY`. */
  diaphragmDome: number;
}

/** Exposure and detector settings of one image. */
export interface Exposure {
  /** Density mapped to black. */
  black: number;
  /** Density mapped to white. */
  white: number;
  /** Gamma applied after the window (values < 1 brighten mid-tones). */
  gamma: number;
  /** Standard deviation of the additive noise, in output units (0-1). */
  noise: number;
  /** Blur radius as a fraction of the image size (detector unsharpness). */
  blur: number;
}

/** The whole anatomy of one image. */
export interface Anatomy {
  /** The body's midline. */
  midX: number;
  /** Chest wall half-width (may exceed the image). */
  bodyHalf: number;
  /** Half-width across the shoulders. */
  shoulderHalf: number;
  /** Neck half-width. */
  neckHalf: number;
  /** Where the neck widens into the shoulders. */
  shoulderY: number;
  /** Half-width of the upper mediastinum. */
  mediastinumHalf: number;
  /**
   * The cardiac silhouette: an ellipse centred near the diaphragm (`x`, `y`) with semi-axes `a`
   * (long) and `b`, its long axis tilted by `tilt` radians down towards the image right; the part
   * below the diaphragm merges into the abdomen. `bottom` is where the mediastinum ends.
   */
  heart: { x: number; y: number; a: number; b: number; tilt: number; bottom: number };
  /** The aortic knob on the upper left border of the mediastinum. */
  aorta: { y: number; r: number; bulge: number };
  /** Where the trachea divides (the carina). */
  carinaY: number;
  lungs: [Lung, Lung];
  /** Vertical spacing of the ribs. */
  ribSpacing: number;
  /** Posterior rib half-thickness. */
  ribHalf: number;
  /** Rib brightness. */
  ribDensity: number;
  /** Vessel brightness factor. */
  vesselDensity: number;
  /** Clavicle height at the medial end. */
  clavicleY: number;
  /** Breast shadows over the lower lung fields (0 for none). */
  breast: number;
  /** Gastric air bubble under the left hemidiaphragm (radius 0 for none). */
  gastricBubble: { x: number; y: number; r: number };
  exposure: Exposure;
}

/** Samples an anatomy: position, size, shape and exposure vary per image. */
export function sampleAnatomy(rng: Random): Anatomy {
  const scale = rng.uniform(0.86, 1.04);
  const midX = 0.5 + rng.normal(0, 0.018);
  const top = 0.11 + rng.uniform(-0.04, 0.05);
  const height = rng.uniform(0.57, 0.67) * scale;
  const lungs = ([-1, 1] as const).map((side): Lung => {
    const right = side === -1; // patient's right: wider lung, higher diaphragm
    const apexY = top + rng.uniform(-0.01, 0.015) + (right ? 0 : 0.005);
    const lateral = (right ? 0.29 : 0.28) * scale * rng.uniform(0.95, 1.05);
    const medial = (right ? 0.04 : 0.035) * scale * rng.uniform(0.9, 1.15);
    const domeX = medial + (lateral - medial) * rng.uniform(0.4, 0.5);
    const baseY = apexY + height * (right ? 1 : 1.03) * rng.uniform(0.97, 1.03);
    return {
      side,
      apexY,
      domeX,
      domeBottomY: apexY + height * rng.uniform(0.3, 0.38),
      medial,
      lateral,
      lateralSlope: rng.uniform(0.06, 0.12),
      baseY,
      diaphragmDome: height * rng.uniform(0.14, 0.22),
    };
  }) as [Lung, Lung];
  const mediastinumHalf = rng.uniform(0.05, 0.065) * scale;
  const female = rng.bool(0.45);
  const stomach = rng.bool(0.6);
  return {
    midX,
    bodyHalf: rng.uniform(0.4, 0.47) * scale,
    shoulderHalf: rng.uniform(0.5, 0.62) * scale,
    neckHalf: rng.uniform(0.075, 0.095) * scale,
    shoulderY: top - rng.uniform(0.02, 0.06),
    mediastinumHalf,
    heart: {
      x: midX + rng.uniform(0.04, 0.065) * scale,
      y: lungs[1].baseY - height * rng.uniform(0.1, 0.16),
      a: rng.uniform(0.15, 0.18) * scale,
      b: rng.uniform(0.1, 0.12) * scale,
      tilt: rng.uniform(0.45, 0.7),
      bottom: lungs[1].baseY - height * 0.03,
    },
    aorta: { y: top + height * rng.uniform(0.24, 0.3), r: rng.uniform(0.03, 0.045) * scale, bulge: rng.uniform(0.015, 0.03) * scale },
    carinaY: top + height * rng.uniform(0.36, 0.42),
    lungs,
    ribSpacing: height * rng.uniform(0.1, 0.115),
    ribHalf: rng.uniform(0.007, 0.0095) * scale,
    ribDensity: rng.uniform(0.06, 0.1),
    vesselDensity: rng.uniform(0.85, 1.15),
    clavicleY: top + rng.uniform(0.015, 0.045),
    breast: female ? rng.uniform(0.03, 0.08) : 0,
    gastricBubble: stomach
      ? { x: midX + rng.uniform(0.12, 0.2) * scale, y: lungs[1].baseY + rng.uniform(0.015, 0.04), r: rng.uniform(0.025, 0.05) * scale }
      : { x: 0, y: 0, r: 0 },
    exposure: {
      black: rng.uniform(0.0, 0.08),
      white: rng.uniform(0.85, 1.0),
      gamma: rng.uniform(0.8, 1.2),
      noise: rng.uniform(0.008, 0.018),
      blur: rng.uniform(0.0008, 0.0016),
    },
  };
}

/**
 * The lateral wall's distance from the midline at height `y` (below the dome): convex, widening
 * quickly below the dome and flattening towards the costophrenic angle.
 */
function lateralAt(lung: Lung, y: number): number {
  const t = Math.min(1, Math.max(0, (y - lung.domeBottomY) / (lung.baseY - lung.domeBottomY)));
  return lung.lateral + lung.lateralSlope * (lung.baseY - lung.domeBottomY) * Math.sin((Math.PI / 2) * t);
}

/**
 * The horizontal extent `[inner, outer]` of a lung at height `y`, as distances from the midline,
 * before the diaphragm cuts it; null above the apex or below the costophrenic angle.
 */
export function lungSpan(lung: Lung, y: number): [number, number] | null {
  if (y < lung.apexY || y > lung.baseY) return null;
  if (y < lung.domeBottomY) {
    const q = (lung.domeBottomY - y) / (lung.domeBottomY - lung.apexY);
    const f = Math.sqrt(Math.max(0, 1 - q * q));
    return [lung.domeX - (lung.domeX - lung.medial) * f, lung.domeX + (lung.lateral - lung.domeX) * f];
  }
  return [lung.medial, lateralAt(lung, y)];
}

/**
 * The diaphragm's height under a lung at distance `a` from the midline: a dome whose peak is a
 * little medial of the middle, falling steeply into the costophrenic angle at the lateral wall.
 */
export function diaphragmY(lung: Lung, a: number): number {
  const outer = lateralAt(lung, lung.baseY);
  const u = Math.min(1, Math.max(0, (a - lung.medial) / (outer - lung.medial)));
  const w = 4 * u * (1 - u);
  return lung.baseY - lung.diaphragmDome * Math.pow(w, 0.45) * (1 - 0.25 * u);
}

/** True when the normalised point (x, y) lies in the lung field (midline at `midX`). */
export function insideLung(lung: Lung, midX: number, x: number, y: number): boolean {
  const span = lungSpan(lung, y);
  if (!span) return false;
  const a = (x - midX) * lung.side;
  if (a < span[0] || a > span[1]) return false;
  return y <= diaphragmY(lung, a);
}

/** The point the lung collapses towards (near the hilum), in normalised coordinates. */
export function lungCentre(lung: Lung, midX: number): { x: number; y: number } {
  return {
    x: midX + lung.side * (lung.medial + (lung.lateral - lung.medial) * 0.32),
    y: lung.apexY + (lung.baseY - lung.apexY) * 0.48,
  };
}

/**
 * Rasterises both lung fields at `size x size`: 0 outside, 1 in the image-left lung, 2 in the
 * image-right lung (pixel centres are sampled; the same test as `insideLung`, organised by rows
 * and columns so that each function is evaluated once per row or column, not per pixel).
 */
export function lungLabels(anatomy: Anatomy, size: number): Uint8Array {
  const labels = new Uint8Array(size * size);
  const floor = new Float64Array(size);
  anatomy.lungs.forEach((lung, index) => {
    for (let px = 0; px < size; px++) floor[px] = diaphragmY(lung, ((px + 0.5) / size - anatomy.midX) * lung.side);
    const y0 = Math.max(0, Math.floor(lung.apexY * size));
    const y1 = Math.min(size - 1, Math.ceil(lung.baseY * size));
    for (let py = y0; py <= y1; py++) {
      const y = (py + 0.5) / size;
      const span = lungSpan(lung, y);
      if (!span) continue;
      // Pixels whose centre's distance from the midline lies in [span0, span1].
      const a0 = anatomy.midX + lung.side * span[0];
      const a1 = anatomy.midX + lung.side * span[1];
      const lo = Math.max(0, Math.ceil(Math.min(a0, a1) * size - 0.5) - 1);
      const hi = Math.min(size - 1, Math.floor(Math.max(a0, a1) * size - 0.5) + 1);
      const row = py * size;
      for (let px = lo; px <= hi; px++) {
        const a = ((px + 0.5) / size - anatomy.midX) * lung.side;
        if (a >= span[0] && a <= span[1] && y <= (floor[px] as number)) labels[row + px] = index + 1;
      }
    }
  });
  return labels;
}
