/**
 * Renders a synthetic PA chest radiograph from an `Anatomy` and its pneumothorax regions.
 *
 * The image is built as a density plane (bright = dense, as in MONOCHROME2) from layers: soft
 * tissue of the neck, shoulders and chest wall; the mediastinum with the cardiac silhouette,
 * aortic knob, trachea and a faint spine; air in the lung fields (darker at the apices, greyer at
 * the bases and along the chest wall); vessel trees branching from each hilum and fading
 * towards the periphery; fine parenchymal texture; ribs and clavicles. Then detector blur, an
 * exposure curve and noise. Inside a pneumothorax the vessels and texture are absent and the
 * field is darker (air only); the collapsed lung's edge shows as a thin bright pleural line.
 *
 * Cost is a few passes over the pixels plus work proportional to the drawn structures.
 */
import type { Random } from '../../core/random.js';
import { diaphragmY, lungCentre, lungLabels, lungSpan } from './anatomy.js';
import type { Anatomy, Lung } from './anatomy.js';
import { rasterizePneumothorax } from './pneumothorax.js';
import type { PneumothoraxRegion } from './pneumothorax.js';
import { addBand, addValueNoise, boxBlur, clamp, drawCapsule, smoothstep } from './raster.js';

/** A rendered image with its ground truth. */
export interface RenderedChest {
  /** 8-bit grey pixels, row-major, `size x size`. */
  pixels: Uint8Array;
  size: number;
  /** One 0/1 mask per pneumothorax region (empty list for a negative image). */
  masks: Uint8Array[];
  /** Lung labels: 0 outside, 1 image-left lung, 2 image-right lung. */
  lungs: Uint8Array;
}

/**
 * Work planes reused from one image to the next (zeroed before use): allocating seven 4 MB
 * planes per 1024 x 1024 image costs more in allocation and garbage collection than the drawing.
 */
const pool: { size: number; planes: Float32Array[] } = { size: 0, planes: [] };

function workPlanes(size: number, count: number): Float32Array[] {
  if (pool.size !== size) {
    pool.size = size;
    pool.planes = [];
  }
  while (pool.planes.length < count) pool.planes.push(new Float32Array(size * size));
  const planes = pool.planes.slice(0, count);
  for (const plane of planes) plane.fill(0);
  return planes;
}

/** Renders the image. `rng` drives only textures and noise, never the ground truth. */
export function renderChest(anatomy: Anatomy, regions: readonly PneumothoraxRegion[], size: number, rng: Random): RenderedChest {
  const n = size * size;
  const [density, overlay, shade, markings, bones, airPlane, linePlane] = workPlanes(size, 7) as [
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
  ];
  const labels = lungLabels(anatomy, size);
  const ptx = rasterizePneumothorax(anatomy, regions, labels, size, { air: airPlane, line: linePlane });
  const air = ptx.air as Float32Array;
  const pleura = ptx.line as Float32Array;

  const floor = diaphragmColumns(anatomy, size);
  drawBody(anatomy, floor, density, size);
  // `overlay`: mediastinum and heart, which hide the lung behind them.
  drawMediastinum(anatomy, floor, density, overlay, size);
  // The lung's own shading: greyer at the bases and along the chest wall, breast shadows.
  const bounds = shadeLungs(anatomy, labels, shade, size);

  // Lung markings (vessels and parenchymal texture): absent in a pneumothorax.
  for (const lung of anatomy.lungs) drawVessels(anatomy, lung, labels, markings, size, rng);
  addValueNoise(markings, size, 40, 0.016, rng, bounds);
  addValueNoise(markings, size, 120, 0.012, rng, bounds);

  drawRibs(anatomy, bones, size, rng);
  drawClavicles(anatomy, bones, size);

  const ptxDarkening = rng.uniform(0.08, 0.11);
  const pleuraBrightness = rng.uniform(0.11, 0.16);
  const vesselDensity = anatomy.vesselDensity;
  for (let i = 0; i < n; i++) {
    if (labels[i] === 0) {
      density[i] = (density[i] as number) + 0.55 * (bones[i] as number) + pleuraBrightness * (pleura[i] as number);
      continue;
    }
    const visible = 1 - 0.85 * (overlay[i] as number);
    const a = air[i] as number;
    density[i] =
      (density[i] as number) +
      (bones[i] as number) +
      visible * (-0.35 + (shade[i] as number) + vesselDensity * (1 - a) * (markings[i] as number) - ptxDarkening * a) +
      pleuraBrightness * (pleura[i] as number);
  }

  boxBlur(density, size, size, Math.round(anatomy.exposure.blur * size), markings);
  return { pixels: expose(density, anatomy, rng), size, masks: ptx.masks, lungs: labels };
}

/**
 * The diaphragm's height per image column: under each lung its dome, beyond the lung's lateral
 * wall sloping down along the chest wall, so the abdomen's upper edge follows the diaphragm.
 */
function diaphragmColumns(anatomy: Anatomy, size: number): Float32Array {
  const floor = new Float32Array(size);
  for (let px = 0; px < size; px++) {
    const x = (px + 0.5) / size;
    const lung = x < anatomy.midX ? anatomy.lungs[0] : anatomy.lungs[1];
    const a = Math.abs(x - anatomy.midX);
    const outer = (lungSpan(lung, lung.baseY) as [number, number])[1];
    floor[px] = a <= outer ? diaphragmY(lung, a) : lung.baseY + (a - outer) * 1.2;
  }
  return floor;
}

/** The extra density of the abdomen at height `y` below a diaphragm at `floor`; it rises gradually. */
function abdomenAt(floor: number, y: number): number {
  return ABDOMEN * smoothstep(floor - 0.03, floor + 0.09, y);
}

const ABDOMEN = 0.22;

/** Soft tissue: neck, shoulders and chest wall, thicker (brighter) inwards and in the abdomen. */
function drawBody(anatomy: Anatomy, floor: Float32Array, density: Float32Array, size: number): void {
  const { midX, shoulderY } = anatomy;
  const soft = 0.006 * size;
  for (let py = 0; py < size; py++) {
    const y = (py + 0.5) / size;
    // Neck -> shoulders (widest) -> chest wall.
    const up = smoothstep(shoulderY - 0.03, shoulderY + 0.07, y);
    const down = smoothstep(shoulderY + 0.08, shoulderY + 0.32, y);
    const half = (anatomy.neckHalf + (anatomy.shoulderHalf - anatomy.neckHalf) * up) * (1 - down) + anatomy.bodyHalf * down * (0.96 + 0.06 * y);
    const row = py * size;
    const cx = midX * size;
    const h = half * size;
    const x0 = Math.max(0, Math.floor(cx - h - soft));
    const x1 = Math.min(size - 1, Math.ceil(cx + h + soft));
    const ramp = 0.08 * size;
    for (let px = x0; px <= x1; px++) {
      const inside = h - Math.abs(px + 0.5 - cx);
      const t = inside >= ramp ? 1 : inside <= 0 ? 0 : inside / ramp;
      const edge = inside >= soft ? 1 : inside <= -soft ? 0 : 0.5 + (0.5 * inside) / soft;
      density[row + px] = edge * (0.26 + 0.18 * Math.sqrt(t) + abdomenAt(floor[px] as number, y) * t);
    }
  }
  // Humeral heads at the shoulders, where they fall inside the image.
  for (const s of [-1, 1]) {
    const hx = (midX + s * (anatomy.shoulderHalf - 0.02)) * size;
    const hy = (shoulderY + 0.1) * size;
    const r = 0.06 * size;
    for (let py = Math.max(0, Math.floor(hy - r)); py <= Math.min(size - 1, Math.ceil(hy + r)); py++) {
      for (let px = Math.max(0, Math.floor(hx - r)); px <= Math.min(size - 1, Math.ceil(hx + r)); px++) {
        const q = ((px + 0.5 - hx) ** 2 + (py + 0.5 - hy) ** 2) / (r * r);
        if (q < 1) density[py * size + px] = (density[py * size + px] as number) + 0.08 * Math.sqrt(1 - q);
      }
    }
  }
}

/**
 * The mediastinum: a band with the aortic knob bulging on the image right, and the heart, an
 * ellipse whose lower half lies below the diaphragm so that its visible border is the convex
 * cardiac silhouette; plus the trachea (air, darker) down to the carina and a faint spine.
 */
function drawMediastinum(anatomy: Anatomy, floor: Float32Array, density: Float32Array, overlay: Float32Array, size: number): void {
  const { heart, aorta, midX } = anatomy;
  const soft = 0.008 * size;
  const cx = midX * size;
  const start = anatomy.shoulderY - 0.02;
  // Heart: a tilted ellipse. For a row at offset dy from its centre, the ellipse spans the dx
  // where A dx^2 + B dx + C <= 0.
  const cosT = Math.cos(heart.tilt);
  const sinT = Math.sin(heart.tilt);
  const ia2 = 1 / (heart.a * size) ** 2;
  const ib2 = 1 / (heart.b * size) ** 2;
  const qa = cosT * cosT * ia2 + sinT * sinT * ib2;
  const hcx = heart.x * size;
  const hcy = heart.y * size;
  for (let py = 0; py < size; py++) {
    const y = (py + 0.5) / size;
    if (y < start) continue;
    const fadeIn = smoothstep(start, start + 0.06, y);
    // Lower down the mediastinum and heart merge into the (as dense) abdomen.
    if (y > anatomy.lungs[0].baseY + 0.15 && y > anatomy.lungs[1].baseY + 0.15) break;
    let left = anatomy.mediastinumHalf;
    const knob = (y - aorta.y) / aorta.r;
    if (Math.abs(knob) < 1) left += aorta.bulge * Math.cos((Math.PI / 2) * knob) ** 2;
    const leftPx = left * size;
    const rightPx = anatomy.mediastinumHalf * size;
    // Below its widest row the heart keeps that width down into the abdomen, so that its lower
    // edge never shows.
    const dy = Math.min(0, py + 0.5 - hcy);
    const qb = 2 * dy * cosT * sinT * (ia2 - ib2);
    const qc = dy * dy * (sinT * sinT * ia2 + cosT * cosT * ib2) - 1;
    const disc = qb * qb - 4 * qa * qc;
    const heartMid = disc > 0 ? hcx - qb / (2 * qa) : hcx;
    const heartHalf = disc > 0 ? Math.sqrt(disc) / (2 * qa) : 0;
    const trachea = y < anatomy.carinaY ? 0.1 * smoothstep(anatomy.carinaY, anatomy.carinaY - 0.04, y) : 0;
    const tracheaHalf = 0.013 * size;
    const x0 = Math.max(0, Math.floor(Math.min(cx - rightPx, heartMid - heartHalf) - soft));
    const x1 = Math.min(size - 1, Math.ceil(Math.max(cx + leftPx, heartMid + heartHalf) + soft));
    const row = py * size;
    for (let px = x0; px <= x1; px++) {
      const dx = px + 0.5 - cx;
      const band = dx >= 0 ? leftPx - dx : rightPx + dx;
      const inHeart = heartHalf - Math.abs(px + 0.5 - heartMid);
      const inside = Math.max(band, inHeart);
      let o = inside >= soft ? 1 : inside <= -soft ? 0 : 0.5 + (0.5 * inside) / soft;
      o *= fadeIn;
      const abdomen = abdomenAt(floor[px] as number, y);
      const adx = Math.abs(dx);
      const spine = adx < 0.032 * size ? 0.03 * (adx < 0.026 * size ? 1 : (0.032 * size - adx) / (0.006 * size)) : 0;
      const airway = trachea > 0 && adx < tracheaHalf + 2 ? trachea * Math.min(1, tracheaHalf + 2 - adx) * 0.5 : 0;
      overlay[row + px] = o;
      density[row + px] = (density[row + px] as number) + Math.max(0, 0.22 * o - abdomen) + spine * fadeIn * (1 - abdomen / ABDOMEN) - airway;
    }
  }
  const bubble = anatomy.gastricBubble;
  if (bubble.r > 0) {
    const bx = bubble.x * size;
    const by = bubble.y * size;
    const rx = bubble.r * size;
    const ry = bubble.r * 0.6 * size;
    for (let py = Math.max(0, Math.floor(by - ry)); py <= Math.min(size - 1, Math.ceil(by + ry)); py++) {
      for (let px = Math.max(0, Math.floor(bx - rx)); px <= Math.min(size - 1, Math.ceil(bx + rx)); px++) {
        const q = ((px + 0.5 - bx) / rx) ** 2 + ((py + 0.5 - by) / ry) ** 2;
        // Flat fluid level below, dome above.
        if (q < 1 && py + 0.5 < by + ry * 0.3) density[py * size + px] = (density[py * size + px] as number) - 0.12 * smoothstep(1, 0.7, q);
      }
    }
  }
}

/**
 * Fills `shade` inside the lungs with their own shading: greyer towards the bases and along the
 * chest wall, darker at the apices, breast shadows over the lower lateral fields. Returns the
 * rectangle holding both lungs.
 */
function shadeLungs(anatomy: Anatomy, labels: Uint8Array, shade: Float32Array, size: number): { x0: number; x1: number; y0: number; y1: number } {
  const bounds = { x0: size, x1: 0, y0: size, y1: 0 };
  for (const [index, lung] of anatomy.lungs.entries()) {
    const label = index + 1;
    const y0 = Math.max(0, Math.floor(lung.apexY * size));
    const y1 = Math.min(size - 1, Math.ceil(lung.baseY * size));
    for (let py = y0; py <= y1; py++) {
      const y = (py + 0.5) / size;
      const span = lungSpan(lung, y);
      if (!span) continue;
      const fy = (y - lung.apexY) / (lung.baseY - lung.apexY);
      const base = 0.07 * smoothstep(0.35, 1, fy) - 0.03 * smoothstep(0.25, 0, fy);
      const breast = anatomy.breast * smoothstep(0.5, 0.85, fy);
      const outer = span[1] * size;
      const width = Math.max(1, (span[1] - span[0]) * size);
      const a0 = anatomy.midX * size + lung.side * span[0] * size;
      const a1 = anatomy.midX * size + lung.side * outer;
      const lo = Math.max(0, Math.floor(Math.min(a0, a1)) - 1);
      const hi = Math.min(size - 1, Math.ceil(Math.max(a0, a1)) + 1);
      bounds.x0 = Math.min(bounds.x0, lo);
      bounds.x1 = Math.max(bounds.x1, hi + 1);
      bounds.y0 = Math.min(bounds.y0, py);
      bounds.y1 = Math.max(bounds.y1, py + 1);
      const row = py * size;
      const wallSoft = 0.045 * size;
      for (let px = lo; px <= hi; px++) {
        if (labels[row + px] !== label) continue;
        const toWall = outer - Math.abs(px + 0.5 - anatomy.midX * size);
        const u = clamp(1 - toWall / width, 0, 1);
        const wall = toWall >= wallSoft ? 0 : 1 - toWall / wallSoft;
        shade[row + px] = base + 0.07 * wall * wall + breast * smoothstep(0.3, 0.75, u) + 0.03 * smoothstep(0.3, 0, u);
      }
    }
  }
  return bounds;
}

/**
 * Vessels: a bright hilum, then trunks fanning out from it (up, lateral, down), each a random walk
 * of tapering segments that branches, fades with distance from the hilum, and stops at the lung
 * edge or when too thin to see.
 */
function drawVessels(anatomy: Anatomy, lung: Lung, labels: Uint8Array, plane: Float32Array, size: number, rng: Random): void {
  const label = lung.side === -1 ? 1 : 2;
  const centre = lungCentre(lung, anatomy.midX);
  const hilumX = (anatomy.midX + lung.side * (lung.medial + 0.035)) * size;
  const hilumY = centre.y * size;
  const reach = (lung.lateral - lung.medial) * size;
  drawCapsule(plane, size, hilumX, hilumY - 0.04 * size, hilumX + lung.side * 0.015 * size, hilumY + 0.03 * size, 0.018 * size, 0.014 * size, 0.1);
  const inLung = (x: number, y: number): boolean => {
    const px = Math.floor(x);
    const py = Math.floor(y);
    return px >= 0 && py >= 0 && px < size && py < size && labels[py * size + px] === label;
  };
  interface Branch {
    x: number;
    y: number;
    angle: number; // the lung's mirrored frame: 0 lateral, -pi/2 up
    width: number; // radius in pixels
  }
  const minWidth = Math.max(0.4, size * 0.0008);
  const stack: Branch[] = [];
  const trunks = rng.int(6, 8);
  for (let k = 0; k < trunks; k++) {
    const angle = -1.9 + (3.2 * (k + rng.uniform(0.25, 0.75))) / trunks;
    stack.push({ x: hilumX, y: hilumY + rng.uniform(-0.02, 0.02) * size, angle, width: size * rng.uniform(0.0045, 0.006) });
  }
  let budget = 900;
  while (stack.length > 0 && budget > 0) {
    const b = stack.pop() as Branch;
    let { x, y, angle, width } = b;
    while (width >= minWidth && budget-- > 0) {
      const step = width * rng.uniform(4, 7) + size * 0.008;
      const nx = x + Math.cos(angle) * lung.side * step;
      const ny = y + Math.sin(angle) * step;
      if (!inLung(nx, ny)) break;
      const next = width * rng.uniform(0.8, 0.9);
      const far = Math.hypot(nx - hilumX, ny - hilumY) / reach;
      const value = (0.06 + 0.1 * Math.min(1, width / (size * 0.005))) * Math.exp(-1.1 * far);
      drawCapsule(plane, size, x, y, nx, ny, width, next, value);
      x = nx;
      y = ny;
      width = next;
      angle += rng.normal(0, 0.2);
      if (rng.bool(0.45)) {
        const turn = rng.uniform(0.35, 0.75) * (rng.bool() ? 1 : -1);
        stack.push({ x, y, angle: angle + turn, width: width * rng.uniform(0.7, 0.9) });
        angle -= turn * 0.3;
      }
    }
  }
}

/**
 * Posterior ribs (from beside the spine out to the chest wall: rising a little, then sweeping
 * down laterally; cortex brighter than the middle) and fainter anterior ribs (sloping down
 * towards the sternum, fading before it).
 */
function drawRibs(anatomy: Anatomy, plane: Float32Array, size: number, rng: Random): void {
  const { midX } = anatomy;
  for (const lung of anatomy.lungs) {
    const s = lung.side;
    const wall = Math.min(anatomy.bodyHalf * 0.97, lung.lateral + 0.05);
    const first = lung.apexY - anatomy.ribSpacing * 0.3;
    for (let k = 0; k < 11; k++) {
      const y0 = first + k * anatomy.ribSpacing * (1 + 0.03 * k) + rng.normal(0, 0.002);
      if (y0 > lung.baseY + 0.5 * anatomy.ribSpacing) break;
      const reach = wall * (k === 0 ? 0.5 : k === 1 ? 0.82 : 1);
      const rise = 0.018 + 0.003 * k;
      const drop = 0.08 + 0.012 * k;
      const half = anatomy.ribHalf * (k === 0 ? 0.8 : 1 + 0.03 * k);
      const centre = (px: number): number => {
        const a = Math.abs((px + 0.5) / size - midX) / wall;
        return (y0 - rise * Math.sin((Math.PI * Math.min(a, 0.55)) / 1.1) + drop * a * a * a) * size;
      };
      addBand(plane, size, (midX + s * 0.035) * size, (midX + s * reach) * size, centre, () => half * size, anatomy.ribDensity, 0.12);
      if (k >= 1 && k <= 7) {
        const ya = y0 + 0.03;
        const anterior = (px: number): number => {
          const a = Math.abs((px + 0.5) / size - midX) / wall;
          return (ya + 0.1 * (1 - a) * (1 - a)) * size;
        };
        addBand(plane, size, (midX + s * wall * 0.96) * size, (midX + s * wall * 0.35) * size, anterior, () => half * 1.15 * size, anatomy.ribDensity * 0.4, 0.45);
      }
    }
  }
}

/** Clavicles: S-shaped bands from the sternal notch out and up to the shoulders. */
function drawClavicles(anatomy: Anatomy, plane: Float32Array, size: number): void {
  const { midX } = anatomy;
  for (const s of [-1, 1]) {
    const length = anatomy.shoulderHalf * 0.8;
    const centre = (px: number): number => {
      const a = Math.abs((px + 0.5) / size - midX) / length;
      return (anatomy.clavicleY - 0.06 * a + 0.012 * Math.sin(Math.PI * 2 * a)) * size;
    };
    const half = (px: number): number => {
      const a = Math.abs((px + 0.5) / size - midX) / length;
      return (0.011 + 0.005 * (1 - a)) * size;
    };
    addBand(plane, size, (midX + s * 0.03) * size, (midX + s * length) * size, centre, half, 0.16, 0.08);
  }
}

const LUT_SIZE = 4096;

/** Maps density to 8-bit grey: window and gamma (through a lookup table), then noise. */
function expose(density: Float32Array, anatomy: Anatomy, rng: Random): Uint8Array {
  const { black, white, gamma, noise } = anatomy.exposure;
  const lut = new Float32Array(LUT_SIZE + 1);
  for (let i = 0; i <= LUT_SIZE; i++) lut[i] = Math.pow(i / LUT_SIZE, gamma);
  const pixels = new Uint8Array(density.length);
  const scale = LUT_SIZE / (white - black);
  // Noise from a xorshift32 stream seeded by `rng`: the sum of two 16-bit uniforms (triangular,
  // standard deviation `noise`) per pixel, far cheaper than two calls into `rng` per pixel.
  let state = rng.nextUint32() | 1;
  const amplitude = (noise * 2.449) / 65536;
  for (let i = 0; i < density.length; i++) {
    const f = ((density[i] as number) - black) * scale;
    const v = f <= 0 ? 0 : f >= LUT_SIZE ? 1 : (lut[f | 0] as number);
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const e = ((state & 0xffff) + (state >>> 16) - 65535) * amplitude;
    const out = v + e;
    pixels[i] = out <= 0 ? 0 : out >= 1 ? 255 : (out * 255 + 0.5) | 0;
  }
  return pixels;
}
