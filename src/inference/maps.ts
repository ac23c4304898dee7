/**
 * The map store: probability maps of many images in ONE file (`.pnm`), written and read by
 * positional I/O, so that 3,205 maps at 1024 x 1024 never need to be in memory together.
 *
 * Layout (little endian, every region 8-byte aligned):
 *
 *   0   magic "PNMAPS\0\x01"
 *   8   uint32 header bytes (H), uint32 0
 *   16  JSON header (H bytes, padded with spaces): format, version, dtype, height, width, count,
 *       ids, producer (what made the maps: models, weights, TTA, ...), layout (region offsets)
 *   ..  index: one byte per map, 1 once the map is written (a partial file resumes from it)
 *   ..  labels: one float32 per map, a classifier probability if the producer had one (NaN if not)
 *   ..  maps: count x height x width values, uint8 = round(p * 255) or float16, in id order
 *
 * Map i lives at `layout.maps + i * height * width * bytesPerValue`: the index needs no offsets.
 */
import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { assertInteger, assertOneOf, invalidParameterError } from '../core/validate.js';

export const MAP_STORE_MAGIC = Buffer.from('PNMAPS\0\x01', 'latin1');
export const MAP_STORE_VERSION = 1;

/** How probabilities are kept: uint8 = round(p * 255) (1 byte), or IEEE float16 (2 bytes). */
export type MapDType = 'uint8' | 'float16';
export const MAP_DTYPES: readonly MapDType[] = ['uint8', 'float16'];

/** Free-form description of what produced the maps (models, weights, TTA, size, command). */
export type MapProducer = Record<string, unknown>;

export interface MapStoreHeader {
  format: 'pneumo-native maps';
  version: number;
  dtype: MapDType;
  height: number;
  width: number;
  count: number;
  ids: string[];
  producer: MapProducer;
  layout: { index: number; labels: number; maps: number; mapBytes: number };
}

export interface CreateMapStoreOptions {
  ids: readonly string[];
  height: number;
  width: number;
  dtype?: MapDType;
  producer?: MapProducer;
}

const align8 = (n: number) => Math.ceil(n / 8) * 8;

export function bytesPerValue(dtype: MapDType): number {
  return dtype === 'uint8' ? 1 : 2;
}

// ---- float16 -----------------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE half bits, rounding to nearest even (overflow to infinity, NaN kept). */
export function toHalf(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return sign | h;
}

let halfTable: Float32Array | undefined;

/** IEEE half bits -> float32 value (a 64 K lookup table, built once). */
export function fromHalf(bits: number): number {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >>> 10) & 0x1f;
      const mant = h & 0x3ff;
      halfTable[h] = exp === 0 ? sign * mant * 2 ** -24 : exp === 0x1f ? (mant ? NaN : sign * Infinity) : sign * (1 + mant / 1024) * 2 ** (exp - 15);
    }
  }
  return halfTable[bits]!;
}

/** Encodes probabilities into the store's values (uint8 clamps to [0, 1] first). */
export function encodeMap(probs: Float32Array, dtype: MapDType): Uint8Array {
  if (dtype === 'uint8') {
    const out = new Uint8Array(probs.length);
    for (let i = 0; i < probs.length; i++) {
      const p = probs[i]!;
      out[i] = p > 0 ? (p < 1 ? Math.round(p * 255) : 255) : 0;
    }
    return out;
  }
  const out = new Uint16Array(probs.length);
  for (let i = 0; i < probs.length; i++) out[i] = toHalf(probs[i]!);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Decodes stored values to float32 probabilities. */
export function decodeMap(bytes: Uint8Array, dtype: MapDType): Float32Array {
  if (dtype === 'uint8') {
    const out = new Float32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]! / 255;
    return out;
  }
  const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  fromHalf(0);
  const table = halfTable!;
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]!]!;
  return out;
}

// ---- reading -------------------------------------------------------------------------------------

async function readExactly(fh: FileHandle, length: number, position: number, path: string): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`${path}: the map file ends early (truncated at byte ${position + done}, expected ${position + length})`);
    done += bytesRead;
  }
  return buffer;
}

async function readHeader(fh: FileHandle, path: string): Promise<MapStoreHeader> {
  const head = await readExactly(fh, 16, 0, path).catch(() => {
    throw new Error(`${path}: not a pneumo-native map file (shorter than its 16-byte preamble)`);
  });
  if (!head.subarray(0, 8).equals(MAP_STORE_MAGIC)) throw new Error(`${path}: not a pneumo-native map file (bad magic; expected a .pnm file written by infer or blend)`);
  const length = head.readUInt32LE(8);
  const json = (await readExactly(fh, length, 16, path)).toString('utf8');
  let header: MapStoreHeader;
  try {
    header = JSON.parse(json) as MapStoreHeader;
  } catch (err) {
    throw new Error(`${path}: the map file header is not valid JSON (${(err as Error).message})`);
  }
  if (header.version !== MAP_STORE_VERSION) throw new Error(`${path}: map file version ${header.version} is not supported (this pneumo-native reads version ${MAP_STORE_VERSION})`);
  return header;
}

/** A map file open for reading: `read(i)` fetches one map with one positional read. */
export class MapReader {
  readonly #ids: Map<string, number>;

  private constructor(
    readonly path: string,
    readonly header: MapStoreHeader,
    private readonly fh: FileHandle,
    /** 1 per written map. */
    readonly written: Uint8Array,
    readonly labels: Float32Array,
  ) {
    this.#ids = new Map(header.ids.map((id, i) => [id, i]));
  }

  /** Opens a map file; `requireComplete` (default true) rejects a partial one, naming how many maps it misses. */
  static async open(path: string, options: { requireComplete?: boolean } = {}): Promise<MapReader> {
    const fh = await open(path, 'r');
    try {
      const header = await readHeader(fh, path);
      const { size } = await fh.stat();
      const end = header.layout.maps + header.count * header.layout.mapBytes;
      if (size < end) throw new Error(`${path}: the map file is truncated (${size} bytes, its header needs ${end})`);
      const written = new Uint8Array(await readExactly(fh, header.count, header.layout.index, path));
      const labelBytes = await readExactly(fh, header.count * 4, header.layout.labels, path);
      const labels = new Float32Array(header.count);
      for (let i = 0; i < header.count; i++) labels[i] = labelBytes.readFloatLE(i * 4);
      const reader = new MapReader(path, header, fh, written, labels);
      if ((options.requireComplete ?? true) && !reader.complete) {
        const missing = header.ids.filter((_, i) => written[i] !== 1);
        throw new Error(`${path}: ${missing.length} of ${header.count} maps were never written (an interrupted run? rerun it to resume): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
      }
      return reader;
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get ids(): readonly string[] {
    return this.header.ids;
  }
  get count(): number {
    return this.header.count;
  }
  get height(): number {
    return this.header.height;
  }
  get width(): number {
    return this.header.width;
  }
  get dtype(): MapDType {
    return this.header.dtype;
  }
  get producer(): MapProducer {
    return this.header.producer;
  }
  /** Whether every map is written. */
  get complete(): boolean {
    return this.written.every((v) => v === 1);
  }

  /** The index of `id`, or -1. */
  indexOf(id: string): number {
    return this.#ids.get(id) ?? -1;
  }

  #index(which: number | string): number {
    const i = typeof which === 'string' ? this.indexOf(which) : which;
    if (typeof which === 'string' && i < 0) throw new RangeError(`${this.path}: no map for image ${which}`);
    assertInteger('index', i, 0, this.count - 1);
    return i;
  }

  /** The stored values of maps [start, start + n): uint8 bytes, or float16 bits as bytes. */
  async readRaw(start: number, n = 1): Promise<Uint8Array> {
    assertInteger('start', start, 0, this.count);
    assertInteger('n', n, 0, this.count - start);
    const buffer = await readExactly(this.fh, n * this.header.layout.mapBytes, this.header.layout.maps + start * this.header.layout.mapBytes, this.path);
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }

  /** One map as float32 probabilities, by index or id. */
  async read(which: number | string): Promise<Float32Array> {
    return decodeMap(await this.readRaw(this.#index(which)), this.dtype);
  }

  /**
   * Maps [start, start + n) ready for the threshold search: uint8 values as stored, float16 as
   * float32 probabilities.
   */
  async readForSearch(start: number, n: number): Promise<Uint8Array | Float32Array> {
    const raw = await this.readRaw(start, n);
    return this.dtype === 'uint8' ? raw : decodeMap(raw, 'float16');
  }

  /** The classifier probability stored with map `which`, or null. */
  label(which: number | string): number | null {
    const v = this.labels[this.#index(which)]!;
    return Number.isNaN(v) ? null : v;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

// ---- writing -------------------------------------------------------------------------------------

function buildHeader(options: CreateMapStoreOptions): MapStoreHeader {
  const dtype = options.dtype ?? 'uint8';
  assertOneOf('dtype', dtype, MAP_DTYPES);
  assertInteger('height', options.height, 1, 1 << 15);
  assertInteger('width', options.width, 1, 1 << 15);
  if (!Array.isArray(options.ids) || options.ids.some((id) => typeof id !== 'string' || id === '')) throw invalidParameterError('ids', 'an array of non-empty strings', options.ids);
  const seen = new Set<string>();
  for (const id of options.ids) {
    if (seen.has(id)) throw invalidParameterError('ids', 'distinct image ids', `${id} twice`);
    seen.add(id);
  }
  const count = options.ids.length;
  const mapBytes = options.height * options.width * bytesPerValue(dtype);
  const header: MapStoreHeader = {
    format: 'pneumo-native maps',
    version: MAP_STORE_VERSION,
    dtype,
    height: options.height,
    width: options.width,
    count,
    ids: [...options.ids],
    producer: options.producer ?? {},
    layout: { index: 0, labels: 0, maps: 0, mapBytes },
  };
  // The offsets depend on the header's length, which depends on the offsets' digits: iterate.
  for (let k = 0; k < 4; k++) {
    const h = align8(Buffer.byteLength(JSON.stringify(header)));
    header.layout.index = 16 + h;
    header.layout.labels = header.layout.index + align8(count);
    header.layout.maps = header.layout.labels + align8(count * 4);
  }
  return header;
}

/**
 * A map file open for writing. `create` starts a new file (or resumes a partial one with the same
 * ids, size, dtype and producer); `write(i, probs, label?)` stores one map, then marks it written.
 */
export class MapWriter {
  private constructor(
    readonly path: string,
    readonly header: MapStoreHeader,
    private readonly fh: FileHandle,
    /** 1 per map already written (from a previous run too). */
    readonly written: Uint8Array,
  ) {}

  /**
   * Creates `path`, or with `resume` (default true) continues a partial file made with the same
   * ids, size, dtype and producer; a different file at `path` is an error unless `overwrite`.
   */
  static async create(path: string, options: CreateMapStoreOptions & { resume?: boolean; overwrite?: boolean }): Promise<MapWriter> {
    const header = buildHeader(options);
    const exists = await stat(path).then(
      () => true,
      () => false,
    );
    if (exists && (options.resume ?? true)) {
      const fh = await open(path, 'r+');
      let reuse: MapWriter | null = null;
      try {
        let old: MapStoreHeader | null = null;
        try {
          old = await readHeader(fh, path);
        } catch (err) {
          if (!options.overwrite) throw new Error(`${(err as Error).message}: remove it, choose another --out, or pass --overwrite`);
        }
        const same =
          old !== null &&
          old.dtype === header.dtype &&
          old.height === header.height &&
          old.width === header.width &&
          JSON.stringify(old.ids) === JSON.stringify(header.ids) &&
          JSON.stringify(old.producer) === JSON.stringify(header.producer);
        if (same) {
          reuse = new MapWriter(path, old!, fh, new Uint8Array(await readExactly(fh, old!.count, old!.layout.index, path)));
        } else if (!options.overwrite) {
          throw new Error(`${path} already holds other maps (different ids, size, dtype or producer): remove it, choose another --out, or pass --overwrite`);
        }
      } finally {
        if (reuse === null) await fh.close();
      }
      if (reuse) return reuse;
    } else if (exists && !options.overwrite) {
      throw new Error(`${path} already exists: remove it, choose another --out, or pass --overwrite`);
    }
    return MapWriter.#fresh(path, header);
  }

  static async #fresh(path: string, header: MapStoreHeader): Promise<MapWriter> {
    const fh = await open(path, 'w+');
    try {
      const json = Buffer.from(JSON.stringify(header).padEnd(header.layout.index - 16, ' '), 'utf8');
      const preamble = Buffer.alloc(16);
      MAP_STORE_MAGIC.copy(preamble, 0);
      preamble.writeUInt32LE(json.length, 8);
      await fh.write(preamble, 0, 16, 0);
      await fh.write(json, 0, json.length, 16);
      const labels = Buffer.alloc(header.count * 4);
      for (let i = 0; i < header.count; i++) labels.writeFloatLE(NaN, i * 4);
      await fh.write(labels, 0, labels.length, header.layout.labels);
      // Full length up front (sparse): readers can tell a truncated file from a partial one.
      await fh.truncate(header.layout.maps + header.count * header.layout.mapBytes);
      return new MapWriter(path, header, fh, new Uint8Array(header.count));
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get ids(): readonly string[] {
    return this.header.ids;
  }
  get count(): number {
    return this.header.count;
  }
  /** Maps written so far (including a previous run's). */
  get writtenCount(): number {
    let n = 0;
    for (const v of this.written) n += v;
    return n;
  }
  /** Indices not yet written, in order. */
  pending(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.count; i++) if (this.written[i] !== 1) out.push(i);
    return out;
  }

  /** Stores map `index` (float32 probabilities, height x width) and its optional classifier probability. */
  async write(index: number, probs: Float32Array, label?: number | null): Promise<void> {
    assertInteger('index', index, 0, this.count - 1);
    const pixels = this.header.height * this.header.width;
    if (!(probs instanceof Float32Array) || probs.length !== pixels) throw invalidParameterError('probs', `a Float32Array of ${this.header.height} x ${this.header.width} = ${pixels} values`, probs);
    await this.writeRaw(index, encodeMap(probs, this.header.dtype), label);
  }

  /** Stores map `index` already encoded in the file's dtype. */
  async writeRaw(index: number, bytes: Uint8Array, label?: number | null): Promise<void> {
    assertInteger('index', index, 0, this.count - 1);
    if (bytes.length !== this.header.layout.mapBytes) throw invalidParameterError('bytes', `${this.header.layout.mapBytes} bytes`, bytes);
    await this.fh.write(bytes, 0, bytes.length, this.header.layout.maps + index * this.header.layout.mapBytes);
    if (label !== undefined && label !== null) {
      const b = Buffer.alloc(4);
      b.writeFloatLE(label, 0);
      await this.fh.write(b, 0, 4, this.header.layout.labels + index * 4);
    }
    // The index byte goes last: a map is marked written only once its values are in the file.
    await this.fh.write(Uint8Array.of(1), 0, 1, this.header.layout.index + index);
    this.written[index] = 1;
  }

  /** Flushes to disk and closes. */
  async close(): Promise<void> {
    await this.fh.sync();
    await this.fh.close();
  }
}
