/**
 * Bilinear resizing of probability maps and masks with half-pixel centres (PyTorch's
 * `interpolate(mode='bilinear', align_corners=False)`, cv2.resize's INTER_LINEAR when enlarging):
 * the first place resizes maps to 1024 this way before blending, and masks then binarise at 0.5.
 */
import { assertInteger, invalidParameterError } from '../core/validate.js';

/** Per output index along one axis: the two source indices and the weight of the second. */
export interface BilinearAxis {
  i0: Int32Array;
  i1: Int32Array;
  f: Float32Array;
}

/**
 * The sampling of one axis resized from `inSize` to `outSize` with half-pixel centres (source
 * coordinate (o + 0.5) * in / out - 0.5, clamped at the edges), shared by `resizeBilinear` and the
 * serving path's bounding-box-limited `upsampleMask`, so the two agree to the pixel.
 */
export function bilinearAxis(outSize: number, inSize: number): BilinearAxis {
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

/** Resizes a row-major map (float probabilities, or uint8 read as v / 255 when `uint8Scale`) to outH x outW. */
export function resizeBilinear(src: Float32Array | Uint8Array, height: number, width: number, outHeight: number, outWidth: number, options: { uint8Scale?: boolean } = {}): Float32Array {
  assertInteger('height', height, 1, 1 << 15);
  assertInteger('width', width, 1, 1 << 15);
  assertInteger('outHeight', outHeight, 1, 1 << 15);
  assertInteger('outWidth', outWidth, 1, 1 << 15);
  if (!(src instanceof Float32Array || src instanceof Uint8Array) || src.length !== height * width) {
    throw invalidParameterError('src', `a Float32Array or Uint8Array of ${height} x ${width} = ${height * width} values`, src);
  }
  const k = src instanceof Uint8Array && options.uint8Scale ? 1 / 255 : 1;
  if (outHeight === height && outWidth === width) {
    const copy = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) copy[i] = src[i]! * k;
    return copy;
  }
  const ys = bilinearAxis(outHeight, height);
  const xs = bilinearAxis(outWidth, width);
  const out = new Float32Array(outHeight * outWidth);
  for (let r = 0; r < outHeight; r++) {
    const row0 = ys.i0[r]! * width;
    const row1 = ys.i1[r]! * width;
    const fy = ys.f[r]!;
    for (let c = 0; c < outWidth; c++) {
      const x0 = xs.i0[c]!;
      const x1 = xs.i1[c]!;
      const fx = xs.f[c]!;
      const top = src[row0 + x0]! + (src[row0 + x1]! - src[row0 + x0]!) * fx;
      const bottom = src[row1 + x0]! + (src[row1 + x1]! - src[row1 + x0]!) * fx;
      out[r * outWidth + c] = (top + (bottom - top) * fy) * k;
    }
  }
  return out;
}

/** Resizes a 0/1 mask bilinearly and binarises it at 0.5 (SPEC section 4's resize to 1024). */
export function resizeMask(mask: Uint8Array, height: number, width: number, outHeight: number, outWidth: number): Uint8Array {
  const binary = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) binary[i] = mask[i] ? 1 : 0;
  if (outHeight === height && outWidth === width) return binary;
  const resized = resizeBilinear(binary, height, width, outHeight, outWidth);
  const out = new Uint8Array(resized.length);
  for (let i = 0; i < resized.length; i++) out[i] = resized[i]! > 0.5 ? 1 : 0;
  return out;
}
