/**
 * Weighted blending of map files (SPEC section 4: pipelines blended with weights such as
 * 0.4/0.2/0.2/0.2, maps resized to a common size bilinearly first). Streams one image at a time
 * and resumes a partial output.
 */
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import { resizeBilinear } from '../scoring/resize.js';
import { MAP_DTYPES, MapReader, MapWriter } from './maps.js';
import type { MapDType } from './maps.js';

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
    } catch (err) {
      // Maps completed before the failure stay recorded (a rerun resumes after them); the
      // failure itself (e.g. a full disk, naming the file) is what the caller sees.
      await writer.close().catch(() => undefined);
      throw err;
    }
    await writer.close();
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

/**
 * Several map files read as one set of maps, by id: files over distinct images are joined
 * (`union`, e.g. one file per fold or per test shard, one size); files over the same images are
 * blended on the fly with their weights (`blend`, maps resized bilinearly to the largest size).
 */
export interface MapSet {
  readonly mode: 'single' | 'union' | 'blend';
  /** Every id, in the first file's order (then the next file's, for a union). */
  readonly ids: readonly string[];
  readonly height: number;
  readonly width: number;
  readonly paths: readonly string[];
  /** Normalised weights (blend), else 1 each. */
  readonly weights: readonly number[];
  has(id: string): boolean;
  /** The map of `id` as float32 probabilities at height x width. */
  read(id: string): Promise<Float32Array>;
  /** The classifier probability stored with `id` (blended alike), or null when any file lacks it. */
  label(id: string): number | null;
  close(): Promise<void>;
}

/** Opens `inputs` (paths, or `{ path, weight }`) as one `MapSet`; weights other than 1 need files over the same images. */
export async function openMapSet(inputs: readonly (string | BlendInput)[]): Promise<MapSet> {
  if (!Array.isArray(inputs) || inputs.length === 0) throw invalidParameterError('maps', 'at least one map file', inputs);
  const list = inputs.map((i) => (typeof i === 'string' ? { path: i, weight: 1 } : { path: i.path, weight: i.weight ?? 1 }));
  list.forEach((i, k) => assertNumber(`maps[${k}].weight`, i.weight, 0));
  const readers: MapReader[] = [];
  try {
    for (const i of list) readers.push(await MapReader.open(i.path));
    const first = readers[0]!;
    const sameImages = readers.every((r) => r.count === first.count && r.ids.every((id) => first.indexOf(id) >= 0));
    const close = () => Promise.all(readers.map((r) => r.close())).then(() => undefined);
    if (readers.length > 1 && sameImages) {
      const sum = list.reduce((a, i) => a + i.weight, 0);
      if (!(sum > 0)) throw invalidParameterError('weights', 'at least one positive weight', list.map((i) => i.weight).join(', '));
      const weights = list.map((i) => i.weight / sum);
      const size = Math.max(...readers.map((r) => Math.max(r.height, r.width)));
      return {
        mode: 'blend',
        ids: first.ids,
        height: size,
        width: size,
        paths: list.map((i) => i.path),
        weights,
        has: (id) => first.indexOf(id) >= 0,
        async read(id) {
          const acc = new Float32Array(size * size);
          for (let k = 0; k < readers.length; k++) {
            const r = readers[k]!;
            const map = await r.read(id);
            const resized = r.height === size && r.width === size ? map : resizeBilinear(map, r.height, r.width, size, size);
            const w = weights[k]!;
            for (let p = 0; p < acc.length; p++) acc[p] += w * resized[p]!;
          }
          return acc;
        },
        label(id) {
          let total = 0;
          for (let k = 0; k < readers.length; k++) {
            const l = readers[k]!.label(id);
            if (l === null) return null;
            total += weights[k]! * l;
          }
          return total;
        },
        close,
      };
    }
    if (list.some((i) => i.weight !== 1)) {
      throw new Error(`map weights blend files over the same images, but ${list.map((i) => i.path).join(', ')} hold different images (read as one set, each image from its own file)`);
    }
    const where = new Map<string, MapReader>();
    for (const r of readers) {
      if (r.height !== first.height || r.width !== first.width) {
        throw new Error(`${r.path} holds ${r.height}x${r.width} maps but ${first.path} holds ${first.height}x${first.width}: files over different images must share one size (blend or re-infer them)`);
      }
      for (const id of r.ids) {
        const other = where.get(id);
        if (other) throw new Error(`image ${id} is in both ${other.path} and ${r.path}: files over different images must not share images (files over the same images are blended)`);
        where.set(id, r);
      }
    }
    return {
      mode: readers.length === 1 ? 'single' : 'union',
      ids: [...where.keys()],
      height: first.height,
      width: first.width,
      paths: list.map((i) => i.path),
      weights: list.map(() => 1),
      has: (id) => where.has(id),
      read: (id) => {
        const r = where.get(id);
        if (!r) return Promise.reject(new RangeError(`no map for image ${id} in ${list.map((i) => i.path).join(', ')}`));
        return r.read(id);
      },
      label: (id) => where.get(id)?.label(id) ?? null,
      close,
    };
  } catch (err) {
    await Promise.all(readers.map((r) => r.close()));
    throw err;
  }
}
