/**
 * CLAHE (contrast-limited adaptive histogram equalisation) of an 8-bit grayscale image, as
 * OpenCV's `cv2.createCLAHE(clipLimit, (tiles, tiles)).apply(image)` computes it: the image
 * (padded reflect-101 to a multiple of the grid) is cut into tiles; each tile's 256-bin histogram
 * is clipped at max(1, int(clipLimit * tilePixels / 256)), the excess spread evenly (the remainder
 * one count at a time, every 256/remainder bins), its cumulative sum scaled to a lookup table; each
 * pixel is then the bilinear blend of the four nearest tiles' tables at its value.
 *
 * The UNet++ seed's preprocessing (SPEC 7): `prepare --clahe` writes CLAHE'd PNGs, so training,
 * validation and inference all see the same images. (The `CLAHE` augmentation is the random
 * training-time transform; it runs natively on batches.)
 */
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';

/** CLAHE parameters: OpenCV's clip limit (default 2) and tiles per side (default 8). */
export interface ClaheOptions {
  clipLimit?: number;
  tileGrid?: number;
}

/** OpenCV's cvRound: round half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

/**
 * CLAHE of `pixels` (row-major, `width` x `height`, one byte per pixel); returns a new array.
 * @throws RangeError on a size that does not match the pixels or a bad parameter
 */
export function clahe(pixels: Uint8Array, width: number, height: number, options: ClaheOptions = {}): Uint8Array {
  if (!(pixels instanceof Uint8Array)) throw invalidParameterError('pixels', 'a Uint8Array', pixels);
  assertInteger('width', width, 1);
  assertInteger('height', height, 1);
  if (pixels.length !== width * height) throw new RangeError(`Expected ${width * height} pixels for a ${width} x ${height} image but received ${pixels.length}`);
  const clipLimit = options.clipLimit ?? 2;
  const tiles = options.tileGrid ?? 8;
  assertNumber('clipLimit', clipLimit, 0);
  assertInteger('tileGrid', tiles, 1, 256);
  // Tiles of the image padded (reflect-101, bottom and right) to a multiple of the grid.
  const extW = width % tiles === 0 ? width : width + tiles - (width % tiles);
  const extH = height % tiles === 0 ? height : height + tiles - (height % tiles);
  const tileW = extW / tiles;
  const tileH = extH / tiles;
  const tileArea = tileW * tileH;
  const limit = clipLimit > 0 ? Math.max(1, Math.trunc((clipLimit * tileArea) / 256)) : 0;
  const lutScale = Math.fround(255 / tileArea);
  const luts = new Uint8Array(tiles * tiles * 256);
  const hist = new Int32Array(256);
  for (let ty = 0; ty < tiles; ty++) {
    for (let tx = 0; tx < tiles; tx++) {
      hist.fill(0);
      for (let y = ty * tileH; y < (ty + 1) * tileH; y++) {
        const row = reflect101(y, height) * width;
        for (let x = tx * tileW; x < (tx + 1) * tileW; x++) hist[pixels[row + reflect101(x, width)]!]! += 1;
      }
      if (limit > 0) {
        let clipped = 0;
        for (let i = 0; i < 256; i++) {
          if (hist[i]! > limit) {
            clipped += hist[i]! - limit;
            hist[i] = limit;
          }
        }
        const batch = Math.trunc(clipped / 256);
        let residual = clipped - batch * 256;
        for (let i = 0; i < 256; i++) hist[i]! += batch;
        if (residual !== 0) {
          const step = Math.max(Math.trunc(256 / residual), 1);
          for (let i = 0; i < 256 && residual > 0; i += step, residual--) hist[i]! += 1;
        }
      }
      const base = (ty * tiles + tx) * 256;
      let sum = 0;
      for (let i = 0; i < 256; i++) {
        sum += hist[i]!;
        luts[base + i] = Math.min(255, Math.max(0, roundHalfEven(Math.fround(sum * lutScale))));
      }
    }
  }
  // Bilinear interpolation between the four nearest tiles' tables (float32, as OpenCV).
  const out = new Uint8Array(width * height);
  const f = Math.fround;
  const invW = f(1 / tileW);
  const invH = f(1 / tileH);
  for (let y = 0; y < height; y++) {
    const tyf = f(f(y * invH) - 0.5);
    let ty1 = Math.floor(tyf);
    let ty2 = ty1 + 1;
    const ya = f(tyf - ty1);
    const ya1 = f(1 - ya);
    ty1 = Math.max(ty1, 0);
    ty2 = Math.min(ty2, tiles - 1);
    for (let x = 0; x < width; x++) {
      const txf = f(f(x * invW) - 0.5);
      let tx1 = Math.floor(txf);
      let tx2 = tx1 + 1;
      const xa = f(txf - tx1);
      const xa1 = f(1 - xa);
      tx1 = Math.max(tx1, 0);
      tx2 = Math.min(tx2, tiles - 1);
      const v = pixels[y * width + x]!;
      const l11 = luts[(ty1 * tiles + tx1) * 256 + v]!;
      const l12 = luts[(ty1 * tiles + tx2) * 256 + v]!;
      const l21 = luts[(ty2 * tiles + tx1) * 256 + v]!;
      const l22 = luts[(ty2 * tiles + tx2) * 256 + v]!;
      const res = f(f(f(f(l11 * xa1) + f(l12 * xa)) * ya1) + f(f(f(l21 * xa1) + f(l22 * xa)) * ya));
      out[y * width + x] = Math.min(255, Math.max(0, roundHalfEven(res)));
    }
  }
  return out;
}
