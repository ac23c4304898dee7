/**
 * Weighted blending of map files (SPEC section 4: pipelines blended with weights such as
 * 0.4/0.2/0.2/0.2, maps resized to a common size bilinearly first). Streams one image at a time
 * and resumes a partial output.
 */
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import { MAP_DTYPES, MapReader, MapWriter } from './maps.js';
import type { MapDType } from './maps.js';
import { resizeBilinear } from './resize.js';

export interface BlendInput {
  path: string;
  /** Relative weight (default 1); weights are normalised to sum to 1. */
  weight?: number;
}

export interface BlendOptions {
  /** Output side (default: the largest input side). */
  size?: number;
  /** Output dtype (default: the first input's). */
  dtype?: MapDType;
  /** Replace a different existing output (default false: an error). */
  overwrite?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface BlendResult {
  out: string;
  images: number;
  /** Images blended by this call (the rest were already in a partial output). */
  blended: number;
  size: number;
  dtype: MapDType;
  inputs: { path: string; weight: number; size: [number, number] }[];
}

/**
 * Blends `inputs` into `out`: per image, the weighted mean of the inputs' maps resized to
 * `size` x `size`; classifier probabilities stored with the maps are blended alike when every
 * input has one. Every input must hold the same ids (any order); the output follows the first's.
 */
export async function blendMaps(inputs: readonly BlendInput[], out: string, options: BlendOptions = {}): Promise<BlendResult> {
  if (!Array.isArray(inputs) || inputs.length === 0) throw invalidParameterError('inputs', 'at least one map file', inputs);
  const raw = inputs.map((input, i) => {
    const w = input.weight ?? 1;
    assertNumber(`inputs[${i}].weight`, w, 0);
    return w;
  });
  const sum = raw.reduce((a, b) => a + b, 0);
  if (!(sum > 0)) throw invalidParameterError('weights', 'at least one positive weight', raw.join(', '));
  const weights = raw.map((w) => w / sum);
  const readers: MapReader[] = [];
  try {
    for (const input of inputs) readers.push(await MapReader.open(input.path));
    const first = readers[0]!;
    const size = options.size ?? Math.max(...readers.map((r) => Math.max(r.height, r.width)));
    assertInteger('size', size, 1, 1 << 15);
    const dtype = options.dtype ?? first.dtype;
    if (!MAP_DTYPES.includes(dtype)) throw invalidParameterError('dtype', MAP_DTYPES.join(' or '), dtype);
    const positions = readers.map((r) => {
      if (r === first) return first.ids.map((_, i) => i);
      const missing = first.ids.filter((id) => r.indexOf(id) < 0);
      const extra = r.ids.filter((id) => first.indexOf(id) < 0);
      if (missing.length > 0 || extra.length > 0) {
        throw new Error(
          `${r.path} and ${first.path} hold different images (${missing.length} missing from ${r.path}${missing.length ? `: ${missing.slice(0, 5).join(', ')}` : ''}; ${extra.length} not in ${first.path}${extra.length ? `: ${extra.slice(0, 5).join(', ')}` : ''})`,
        );
      }
      return first.ids.map((id) => r.indexOf(id));
    });
    const writer = await MapWriter.create(out, {
      ids: first.ids,
      height: size,
      width: size,
      dtype,
      overwrite: options.overwrite,
      producer: { blend: inputs.map((input, i) => ({ path: input.path, weight: weights[i], producer: readers[i]!.producer })) },
    });
    let blended = 0;
    try {
      const pending = writer.pending();
      const total = first.count;
      let done = total - pending.length;
      for (const i of pending) {
        const acc = new Float32Array(size * size);
        let label: number | null = 0;
        for (let k = 0; k < readers.length; k++) {
          const r = readers[k]!;
          const j = positions[k]![i]!;
          const map = await r.read(j);
          const resized = r.height === size && r.width === size ? map : resizeBilinear(map, r.height, r.width, size, size);
          const w = weights[k]!;
          for (let p = 0; p < acc.length; p++) acc[p] += w * resized[p]!;
          const l = r.label(j);
          label = label === null || l === null ? null : label + w * l;
        }
        await writer.write(i, acc, label);
        blended++;
        options.onProgress?.(++done, total);
      }
    } finally {
      await writer.close();
    }
    return {
      out,
      images: first.count,
      blended,
      size,
      dtype,
      inputs: inputs.map((input, k) => ({ path: input.path, weight: weights[k]!, size: [readers[k]!.height, readers[k]!.width] as [number, number] })),
    };
  } finally {
    await Promise.all(readers.map((r) => r.close()));
  }
}

/** Parses `path:weight` (the weight after the last colon, when it is a number; default 1). */
export function parseWeighted(text: string): BlendInput {
  const at = text.lastIndexOf(':');
  if (at > 0) {
    const w = Number(text.slice(at + 1));
    if (text.slice(at + 1).trim() !== '' && Number.isFinite(w)) return { path: text.slice(0, at), weight: w };
  }
  return { path: text, weight: 1 };
}
