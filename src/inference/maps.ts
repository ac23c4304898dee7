/**
 * The map store: probability maps of many images in ONE file (`.pnm`), written and read by
 * positional I/O, so that 3,205 maps at 1024 x 1024 never need to be in memory together.
 *
 * Layout (little endian, every region 8-byte aligned):
 *
 *   0   magic "PNMAPS\0\x01"
 *   8   uint32 header bytes (H), uint32 CRC-32 of the H header bytes (version 2; 0 in version 1)
 *   16  JSON header (H bytes, padded with spaces): format, version, dtype, height, width, count,
 *       ids, producer (what made the maps: models, weights, TTA, ...), layout (region offsets)
 *   ..  index: one byte per map, 1 once the map is written (a partial file resumes from it)
 *   ..  labels: one float32 per map, a classifier probability if the producer had one (NaN if not)
 *   ..  checksums (version 2): one uint32 per map, the CRC-32 of its stored values then its label
 *   ..  maps: count x height x width values, uint8 = round(p * 255) or float16, in id order
 *
 * Map i lives at `layout.maps + i * height * width * bytesPerValue`: the index needs no offsets.
 *
 * Integrity: every write is checked for completeness (`core/atomic-write`), and a map's index byte
 * is set only after its values, label and checksum are flushed to disk (`fdatasync`, in groups),
 * so a full disk or a crash can never leave a map marked written that is not. Readers verify the
 * header's checksum on open and each map's checksum on every read; damage is an error naming the
 * file and the map. Version 1 files (no checksums) are still read.
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { writeFully } from '../core/atomic-write.js';
import { crc32 } from '../core/checksum.js';
import { badHeader as recordBadHeader, openRecordFile, readAt, readRecordHeader, RecordWriter } from '../core/record-file.js';
import type { RecordFormat } from '../core/record-file.js';
import { assertInteger, assertOneOf, invalidParameterError } from '../core/validate.js';

export const MAP_STORE_MAGIC = Buffer.from('PNMAPS\0\x01', 'latin1');
/** The version written; version 1 (without checksums) is still read. */
export const MAP_STORE_VERSION = 2;
const READABLE_VERSIONS = [1, 2];

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
  /** Byte offsets of the regions; `checksums` from version 2. */
  layout: { index: number; labels: number; checksums?: number; maps: number; mapBytes: number };
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

/** The map store's record format (core/record-file.ts): its magic, messages and header checks. */
const FORMAT: RecordFormat<MapStoreHeader> = {
  magic: MAP_STORE_MAGIC,
  noun: 'map file',
  expected: 'a .pnm file written by infer or blend',
  remedy: 're-create the file (rerun infer or blend)',
  truncatedHint: '',
  // Version 1 had no header checksum: the version is read first.
  checksumAlways: false,
  checkVersion(header, path) {
    if (!READABLE_VERSIONS.includes(header.version)) throw new Error(`${path}: map file version ${header.version} is not supported (this pneumo-native reads versions ${READABLE_VERSIONS.join(' and ')})`);
  },
  hasChecksum: (header) => header.version >= 2,
  check: (header, path) => checkHeader(header, path),
};

const readExactly = (fh: FileHandle, length: number, position: number, path: string): Promise<Buffer> => readAt(fh, length, position, path, FORMAT);

/** A map file whose header is damaged or inconsistent, named. */
const badHeader = (path: string, what: string): Error => recordBadHeader(FORMAT, path, what);

/** Checks that a parsed header is self-consistent (so that no region lies outside the file's plan). */
function checkHeader(header: MapStoreHeader, path: string): void {
  const isInt = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
  if (typeof header !== 'object' || header === null) throw badHeader(path, 'not a JSON object');
  if (header.format !== 'pneumo-native maps') throw badHeader(path, `format ${JSON.stringify(header.format)}`);
  if (!MAP_DTYPES.includes(header.dtype)) throw badHeader(path, `dtype ${JSON.stringify(header.dtype)}`);
  if (!isInt(header.height, 1, 1 << 15) || !isInt(header.width, 1, 1 << 15)) throw badHeader(path, `size ${JSON.stringify(header.height)} x ${JSON.stringify(header.width)}`);
  if (!Array.isArray(header.ids) || !isInt(header.count, 0, 1 << 30) || header.ids.length !== header.count || header.ids.some((id) => typeof id !== 'string')) {
    throw badHeader(path, `count ${JSON.stringify(header.count)} does not match its ids`);
  }
  const l = header.layout;
  const mapBytes = header.height * header.width * bytesPerValue(header.dtype);
  if (typeof l !== 'object' || l === null || l.mapBytes !== mapBytes) throw badHeader(path, 'layout: map size');
  const regions = [l.index, l.labels, ...(header.version >= 2 ? [l.checksums] : []), l.maps];
  if (!regions.every((v) => isInt(v, 16, Number.MAX_SAFE_INTEGER))) throw badHeader(path, 'layout: offsets');
  if (l.labels < l.index + header.count || (header.version >= 2 ? l.checksums! < l.labels + 4 * header.count || l.maps < l.checksums! + 4 * header.count : l.maps < l.labels + 4 * header.count)) {
    throw badHeader(path, 'layout: overlapping regions');
  }
}

const readHeader = (fh: FileHandle, path: string): Promise<MapStoreHeader> => readRecordHeader(fh, path, FORMAT);

const hex = (v: number) => `0x${v.toString(16).padStart(8, '0')}`;

/** The checksum of a map: CRC-32 of its stored values, then of its 4 label bytes. */
function mapChecksum(values: Uint8Array, label: Uint8Array): number {
  return crc32(label, crc32(values));
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
    /** The label bytes as stored (checksummed with each map). */
    private readonly labelBytes: Buffer,
    /** Per-map checksums (version 2), else null. */
    private readonly checksums: Uint32Array | null,
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
      let checksums: Uint32Array | null = null;
      if (header.layout.checksums !== undefined) {
        const raw = await readExactly(fh, header.count * 4, header.layout.checksums, path);
        checksums = new Uint32Array(header.count);
        for (let i = 0; i < header.count; i++) checksums[i] = raw.readUInt32LE(i * 4);
      }
      const reader = new MapReader(path, header, fh, written, labels, labelBytes, checksums);
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

  /**
   * The stored values of maps [start, start + n): uint8 bytes, or float16 bits as bytes. Each
   * map's checksum is verified (version 2 files).
   * @throws Error naming the file and the map when a map is damaged or was never written
   */
  async readRaw(start: number, n = 1): Promise<Uint8Array> {
    assertInteger('start', start, 0, this.count);
    assertInteger('n', n, 0, this.count - start);
    const mapBytes = this.header.layout.mapBytes;
    const buffer = await readExactly(this.fh, n * mapBytes, this.header.layout.maps + start * mapBytes, this.path);
    for (let k = 0; k < n; k++) {
      const i = start + k;
      if (this.written[i] !== 1) throw new Error(`${this.path}: map ${i} (${this.header.ids[i]}) was never written (an interrupted run? rerun it to resume)`);
      if (this.checksums === null) continue;
      const actual = mapChecksum(buffer.subarray(k * mapBytes, (k + 1) * mapBytes), this.labelBytes.subarray(i * 4, i * 4 + 4));
      if (actual !== this.checksums[i]) {
        throw new Error(`${this.path}: map ${i} (${this.header.ids[i]}) is damaged: checksum ${hex(actual)} where the file records ${hex(this.checksums[i]!)}; re-create the file (rerun infer or blend)`);
      }
    }
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
    layout: { index: 0, labels: 0, checksums: 0, maps: 0, mapBytes },
  };
  // The offsets depend on the header's length, which depends on the offsets' digits: iterate.
  for (let k = 0; k < 4; k++) {
    const h = align8(Buffer.byteLength(JSON.stringify(header)));
    header.layout.index = 16 + h;
    header.layout.labels = header.layout.index + align8(count);
    header.layout.checksums = header.layout.labels + align8(count * 4);
    header.layout.maps = header.layout.checksums + align8(count * 4);
  }
  return header;
}

/** Maps whose index bytes are set together, after one fdatasync (or 64 MiB, whichever first). */
const FLAG_GROUP_MAPS = 64;

/** The 4 label bytes of a map: the probability, or NaN when there is none. */
function labelBytesOf(label: number | null | undefined): Buffer {
  const b = Buffer.alloc(4);
  b.writeFloatLE(label === undefined || label === null ? NaN : label, 0);
  return b;
}

/**
 * A map file open for writing. `create` starts a new file (or resumes a partial one with the same
 * ids, size, dtype and producer); `write(i, probs, label?)` stores one map. A map counts as
 * written (its index byte set) only once its values, label and checksum are on disk: index bytes
 * are set in groups after an `fdatasync`, and by `close()`.
 */
export class MapWriter extends RecordWriter<MapStoreHeader> {
  private constructor(path: string, header: MapStoreHeader, fh: FileHandle, written: Uint8Array) {
    super(path, header, fh, written, FLAG_GROUP_MAPS);
  }

  /**
   * Creates `path`, or with `resume` (default true) continues a partial file made with the same
   * ids, size, dtype and producer; a different file at `path` is an error unless `overwrite`.
   * @throws FileWriteError naming `path` when the folder is read-only, missing or full
   */
  static async create(path: string, options: CreateMapStoreOptions & { resume?: boolean; overwrite?: boolean }): Promise<MapWriter> {
    const header = buildHeader(options);
    return openRecordFile(path, header, options, {
      format: FORMAT,
      end: (h) => h.layout.maps + h.count * h.layout.mapBytes,
      same: (old, h) =>
        old.version === h.version &&
        old.dtype === h.dtype &&
        old.height === h.height &&
        old.width === h.width &&
        JSON.stringify(old.ids) === JSON.stringify(h.ids) &&
        JSON.stringify(old.producer) === JSON.stringify(h.producer),
      differs: (p, old) =>
        old !== null && old.version !== header.version
          ? `${p} was written by another version of pneumo-native (map file version ${old.version}): remove it, choose another --out, or pass --overwrite`
          : `${p} already holds other maps (different ids, size, dtype or producer): remove it, choose another --out, or pass --overwrite`,
      resume: (fh, old, written) => new MapWriter(path, old, fh, written),
      async initialise(fh, h) {
        // The index, labels and checksums are written out (not left sparse), so that recording a
        // map as written never needs a new block of the disk.
        await writeFully(fh, Buffer.alloc(h.layout.labels - h.layout.index), h.layout.index, path);
        const labels = Buffer.alloc(h.layout.maps - h.layout.labels);
        for (let i = 0; i < h.count; i++) labels.writeFloatLE(NaN, i * 4);
        await writeFully(fh, labels, h.layout.labels, path);
      },
      fresh: (fh, h) => new MapWriter(path, h, fh, new Uint8Array(h.count)),
    });
  }

  /** Stores map `index` (float32 probabilities, height x width) and its optional classifier probability. */
  async write(index: number, probs: Float32Array, label?: number | null): Promise<void> {
    assertInteger('index', index, 0, this.count - 1);
    const pixels = this.header.height * this.header.width;
    if (!(probs instanceof Float32Array) || probs.length !== pixels) throw invalidParameterError('probs', `a Float32Array of ${this.header.height} x ${this.header.width} = ${pixels} values`, probs);
    await this.writeRaw(index, encodeMap(probs, this.header.dtype), label);
  }

  /**
   * Stores map `index` already encoded in the file's dtype: its values, label and checksum, each
   * write checked. The map is recorded as written after the next flush (at most
   * 64 maps or 64 MiB later, and at `close()`).
   * @throws FileWriteError naming the file (full disk, I/O error); nothing is then recorded for this map
   */
  async writeRaw(index: number, bytes: Uint8Array, label?: number | null): Promise<void> {
    assertInteger('index', index, 0, this.count - 1);
    if (bytes.length !== this.header.layout.mapBytes) throw invalidParameterError('bytes', `${this.header.layout.mapBytes} bytes`, bytes);
    const { layout } = this.header;
    const labelBytes = labelBytesOf(label);
    await this.flags.record(
      index,
      bytes.length,
      async () => {
        const sum = Buffer.alloc(4);
        sum.writeUInt32LE(mapChecksum(bytes, labelBytes), 0);
        await writeFully(this.fh, bytes, layout.maps + index * layout.mapBytes, this.path);
        await writeFully(this.fh, labelBytes, layout.labels + index * 4, this.path);
        await writeFully(this.fh, sum, layout.checksums! + index * 4, this.path);
      },
      'file',
    );
  }
}
