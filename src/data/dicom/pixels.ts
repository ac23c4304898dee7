/**
 * Native (uncompressed) pixel data to 8-bit grayscale: unpacking 8/16-bit samples (signed per
 * Pixel Representation, masked to Bits Stored), Modality LUT (Rescale Slope/Intercept), VOI
 * window (linear function of PS3.3 C.11.2.1.2.1, or the image's min-max when there is no
 * window) and MONOCHROME1 inversion, so every image ends up in the MONOCHROME2 convention
 * (0 = black) like the SIIM JPEGs.
 */

/** How one native frame is laid out. */
export interface NativeLayout {
  rows: number;
  columns: number;
  /** 8 or 16. */
  bitsAllocated: number;
  bitsStored: number;
  /** 0 unsigned, 1 two's complement. */
  pixelRepresentation: number;
}

/** The grayscale transforms to apply, from the header. */
export interface GrayTransform {
  /** Rescale Slope (0028,1053), 1 when absent. */
  slope: number;
  /** Rescale Intercept (0028,1052), 0 when absent. */
  intercept: number;
  /** The first VOI window, if the file has one with width >= 1. */
  window?: { center: number; width: number };
  /** MONOCHROME1: invert after windowing. */
  invert: boolean;
}

/** Bytes one frame occupies. */
export function nativeFrameBytes(layout: NativeLayout): number {
  return layout.rows * layout.columns * (layout.bitsAllocated / 8);
}

/** Applies the VOI linear window to a rescaled value, giving 0-255 (not yet rounded). */
export function applyWindow(x: number, center: number, width: number): number {
  const c = center - 0.5;
  const half = (width - 1) / 2;
  if (x <= c - half) return 0;
  if (x > c + half) return 255;
  return ((x - c) / (width - 1) + 0.5) * 255;
}

/** Reads the stored samples of one frame as numbers (masked to Bits Stored, sign-extended). */
function unpack(bytes: Uint8Array, layout: NativeLayout): Int32Array {
  const n = layout.rows * layout.columns;
  const out = new Int32Array(n);
  const { bitsStored } = layout;
  const signed = layout.pixelRepresentation === 1;
  const shift = 32 - bitsStored;
  const mask = bitsStored >= 32 ? 0xffffffff : 2 ** bitsStored - 1;
  if (layout.bitsAllocated === 8) {
    for (let i = 0; i < n; i += 1) {
      const v = bytes[i]! & mask;
      out[i] = signed ? (v << shift) >> shift : v;
    }
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
    for (let i = 0; i < n; i += 1) {
      const v = view.getUint16(i * 2, true) & mask;
      out[i] = signed ? (v << shift) >> shift : v;
    }
  }
  return out;
}

/**
 * Converts one native frame to 8-bit grayscale (MONOCHROME2 convention).
 *
 * Unsigned 8-bit data with 8 bits stored and an identity rescale is already display-ready (as in
 * SIIM) and is copied, only inverted for MONOCHROME1. Everything else goes through rescale, then
 * the window (or min-max of the frame), rounded to the nearest integer.
 */
export function nativeFrameToGray8(bytes: Uint8Array, layout: NativeLayout, transform: GrayTransform): Uint8Array {
  const n = layout.rows * layout.columns;
  const out = new Uint8Array(n);
  const direct =
    layout.bitsAllocated === 8 && layout.bitsStored === 8 && layout.pixelRepresentation === 0 && transform.slope === 1 && transform.intercept === 0;
  if (direct) {
    if (transform.invert) for (let i = 0; i < n; i += 1) out[i] = 255 - bytes[i]!;
    else out.set(bytes.subarray(0, n));
    return out;
  }
  const stored = unpack(bytes, layout);
  const { slope, intercept, window } = transform;
  const values = new Float64Array(n);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i += 1) {
    const v = stored[i]! * slope + intercept;
    values[i] = v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (window) {
    for (let i = 0; i < n; i += 1) out[i] = Math.round(applyWindow(values[i]!, window.center, window.width));
  } else {
    const range = max - min;
    for (let i = 0; i < n; i += 1) out[i] = range > 0 ? Math.round(((values[i]! - min) / range) * 255) : 0;
  }
  if (transform.invert) for (let i = 0; i < n; i += 1) out[i] = 255 - out[i]!;
  return out;
}
