/**
 * The prepared image store: the uint8 images (and masks) of a `prepare` split in ONE file
 * (`.pnimg`), at fixed offsets, so that a training epoch reads bytes with no decoding.
 *
 * Layout (little endian; the preamble and header as the map store's `.pnm`, `inference/maps.ts`):
 *
 *   0   magic "PNIMGS\0\x01"
 *   8   uint32 header bytes (H), uint32 CRC-32 of the H header bytes
 *   16  JSON header (H bytes, padded with spaces): format, version, size, count, ids, masks (true
 *       when every image has a mask), producer (what made the images: source folder, prepare
 *       settings), layout (region offsets)
 *   ..  index: one byte per image, 1 once the image (and its mask) is written
 *   ..  checksums: one uint32 per image, the CRC-32 of its image bytes then its mask bytes
 *   ..  images: count x size x size uint8, in id order, from a 4096-byte boundary
 *   ..  masks (when `masks`): count x size x size uint8 (255 inside), from a 4096-byte boundary
 *
 * Image i lives at `layout.images + i * size * size` (its mask at `layout.masks + i * size * size`):
 * the file can be memory-mapped and indexed with no table. Every region starts on a page boundary.
 *
 * Integrity and resume follow the map store: every write is checked (`core/atomic-write`), an
 * image's index byte is set only after its bytes and checksum are flushed (`fdatasync`, in
 * groups), so an interrupted conversion resumes where it stopped and a full disk never leaves an
 * image marked written that is not. Readers verify the header's checksum on open and each image's
 * checksum on every read; a truncated or damaged store is an error naming the file (and the image).
 */
import { close as closeFd, open as openFd, read as readFd } from 'node:fs';
import { readdir, open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { writeFully } from '../core/atomic-write.js';
import { crc32 } from '../core/checksum.js';
import { badHeader as recordBadHeader, openRecordFile, readAt, readRecordHeader, RecordWriter } from '../core/record-file.js';
import type { RecordFormat } from '../core/record-file.js';
import { assertInteger, invalidParameterError } from '../core/validate.js';
import { ensureRuntime } from '../core/runtime.js';
import { Tensor } from '../core/tensor.js';
import type { NativeImageStore } from '../native/store.js';

export const IMAGE_STORE_MAGIC = Buffer.from('PNIMGS\0\x01', 'latin1');
export const IMAGE_STORE_VERSION = 1;
/** The file name a split's store has inside a prepared folder: `train.pnimg`, `test.pnimg`. */
export const STORE_EXTENSION = '.pnimg';

/** Free-form description of what produced the images (source folder, prepare settings). */
export type ImageStoreProducer = Record<string, unknown>;

export interface ImageStoreHeader {
  format: 'pneumo-native images';
  version: number;
  /** Images are size x size, 8-bit gray. */
  size: number;
  count: number;
  ids: string[];
  /** Whether the store holds a mask per image. */
  masks: boolean;
  producer: ImageStoreProducer;
  layout: { index: number; checksums: number; images: number; masks: number | null; imageBytes: number };
}

export interface CreateImageStoreOptions {
  ids: readonly string[];
  size: number;
  masks: boolean;
  producer?: ImageStoreProducer;
}

const PAGE = 4096;
const align = (n: number, to: number) => Math.ceil(n / to) * to;
const hex = (v: number) => `0x${v.toString(16).padStart(8, '0')}`;

/** One positional read on a raw descriptor (readers hold a number, never a FileHandle that GC would close). */
function preadFd(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => readFd(fd, buffer, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

async function preadExactly(fd: number, buffer: Uint8Array, offset: number, length: number, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < length) {
    const n = await preadFd(fd, buffer, offset + done, length - done, position + done);
    if (n === 0) throw new Error(`${path}: the image store ends early (truncated at byte ${position + done}, expected ${position + length}); re-create it (rerun \`pneumo-native store\`)`);
    done += n;
  }
}

/** The image store's record format (core/record-file.ts): its magic, messages and header checks. */
const FORMAT: RecordFormat<ImageStoreHeader> = {
  magic: IMAGE_STORE_MAGIC,
  noun: 'image store',
  expected: 'a .pnimg file written by `pneumo-native store` or `prepare --store`',
  remedy: 're-create the store (rerun `pneumo-native store`)',
  truncatedHint: '; re-create it (rerun `pneumo-native store`)',
  checksumAlways: true,
  checkVersion(header, path) {
    if (header.version !== IMAGE_STORE_VERSION) throw new Error(`${path}: image store version ${header.version} is not supported (this pneumo-native reads version ${IMAGE_STORE_VERSION})`);
  },
  hasChecksum: () => true,
  check: (header, path) => checkHeader(header, path),
};

const badHeader = (path: string, what: string): Error => recordBadHeader(FORMAT, path, what);

const readBytes = (fh: FileHandle, length: number, position: number, path: string): Promise<Buffer> => readAt(fh, length, position, path, FORMAT);

function checkHeader(header: ImageStoreHeader, path: string): void {
  const isInt = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
  if (typeof header !== 'object' || header === null) throw badHeader(path, 'not a JSON object');
  if (header.format !== 'pneumo-native images') throw badHeader(path, `format ${JSON.stringify(header.format)}`);
  if (!isInt(header.size, 1, 1 << 15)) throw badHeader(path, `size ${JSON.stringify(header.size)}`);
  if (!Array.isArray(header.ids) || !isInt(header.count, 0, 1 << 30) || header.ids.length !== header.count || header.ids.some((id) => typeof id !== 'string')) {
    throw badHeader(path, `count ${JSON.stringify(header.count)} does not match its ids`);
  }
  if (typeof header.masks !== 'boolean') throw badHeader(path, 'masks is not true or false');
  const l = header.layout;
  const imageBytes = header.size * header.size;
  if (typeof l !== 'object' || l === null || l.imageBytes !== imageBytes) throw badHeader(path, 'layout: image size');
  const regions = [l.index, l.checksums, l.images, ...(header.masks ? [l.masks] : [])];
  if (!regions.every((v) => isInt(v, 16, Number.MAX_SAFE_INTEGER))) throw badHeader(path, 'layout: offsets');
  if (!header.masks && l.masks !== null) throw badHeader(path, 'layout: a mask region without masks');
  if (l.checksums < l.index + header.count || l.images < l.checksums + 4 * header.count || (header.masks && l.masks! < l.images + header.count * imageBytes)) {
    throw badHeader(path, 'layout: overlapping regions');
  }
}

const readHeader = (fh: FileHandle, path: string): Promise<ImageStoreHeader> => readRecordHeader(fh, path, FORMAT);

function storeEnd(header: ImageStoreHeader): number {
  const { layout, count } = header;
  return header.masks ? layout.masks! + count * layout.imageBytes : layout.images + count * layout.imageBytes;
}

/** The checksum of one image: CRC-32 of its bytes, then of its mask's bytes (if any). */
function recordChecksum(image: Uint8Array, mask: Uint8Array | null): number {
  const c = crc32(image);
  return mask ? crc32(mask, c) : c;
}

/** A batch read from a store: images (and masks) of the requested indices, back to back. */
export interface StoreBatch {
  /** indices.length x size x size uint8. */
  images: Buffer;
  /** indices.length x size x size uint8 (255 inside), when the store has masks. */
  masks: Buffer | null;
}

/** Options of {@link ImageStoreReader.readTensors}. */
export interface StoreTensorOptions {
  /** Output size (square); default the store's. Another size is a bilinear resize, masks thresholded at 128. */
  size?: number;
  /** Read the masks (default: when the store has them). */
  masks?: boolean;
  /** Images as float32 normalised with these statistics instead of uint8. */
  normalize?: { mean: number; std: number };
  /** "cpu" (default) or a CUDA device: staged through pinned memory, copied on a side stream. */
  device?: string;
  /** CUDA only: pinned host staging (default true). */
  pinned?: boolean;
}

/**
 * An image store open for reading. `readTensors(indices)` reads images (and masks) natively into
 * batch tensors: positional reads straight into each row on a native worker, no JavaScript in the
 * loop. `readBatch(indices)` is the JavaScript reader (one positional read each, into buffers).
 * Both check every image's checksum.
 */
export class ImageStoreReader {
  readonly #ids: Map<string, number>;
  #closed = false;
  #native: NativeImageStore | null = null;

  private constructor(
    readonly path: string,
    readonly header: ImageStoreHeader,
    private readonly fd: number,
    /** 1 per written image. */
    readonly written: Uint8Array,
    private readonly checksums: Uint32Array,
  ) {
    this.#ids = new Map(header.ids.map((id, i) => [id, i]));
  }

  /**
   * Opens a store; `requireComplete` (default true) rejects a partial one, naming how many images
   * it misses.
   * @throws Error naming the file when it is not a store, is truncated, damaged or incomplete
   */
  static async open(path: string, options: { requireComplete?: boolean } = {}): Promise<ImageStoreReader> {
    const fh = await open(path, 'r');
    try {
      const header = await readHeader(fh, path);
      const { size } = await fh.stat();
      const end = storeEnd(header);
      if (size < end) throw new Error(`${path}: the image store is truncated (${size} bytes, its header needs ${end}); re-create it (rerun \`pneumo-native store\`)`);
      const written = new Uint8Array(await readBytes(fh, header.count, header.layout.index, path));
      const raw = await readBytes(fh, header.count * 4, header.layout.checksums, path);
      const checksums = new Uint32Array(header.count);
      for (let i = 0; i < header.count; i++) checksums[i] = raw.readUInt32LE(i * 4);
      if ((options.requireComplete ?? true) && !written.every((v) => v === 1)) {
        const missing = header.ids.filter((_, i) => written[i] !== 1);
        throw new Error(`${path}: ${missing.length} of ${header.count} images were never written (an interrupted conversion? rerun \`pneumo-native store\` to resume): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
      }
      const fd = await new Promise<number>((resolve, reject) => openFd(path, 'r', (err, n) => (err ? reject(err) : resolve(n))));
      return new ImageStoreReader(path, header, fd, written, checksums);
    } finally {
      await fh.close();
    }
  }

  get ids(): readonly string[] {
    return this.header.ids;
  }
  get count(): number {
    return this.header.count;
  }
  get size(): number {
    return this.header.size;
  }
  get hasMasks(): boolean {
    return this.header.masks;
  }
  get producer(): ImageStoreProducer {
    return this.header.producer;
  }
  get complete(): boolean {
    return this.written.every((v) => v === 1);
  }

  /** The index of `id`, or -1. */
  indexOf(id: string): number {
    return this.#ids.get(id) ?? -1;
  }

  /**
   * Reads images (and masks) `indices` into one batch; `into` reuses buffers of the right size.
   * @throws Error naming the file and the image when one is damaged or was never written
   */
  async readBatch(indices: ArrayLike<number>, into?: StoreBatch): Promise<StoreBatch> {
    const n = indices.length;
    const bytes = this.header.layout.imageBytes;
    const images = into?.images ?? Buffer.allocUnsafe(n * bytes);
    const masks = this.header.masks ? (into?.masks ?? Buffer.allocUnsafe(n * bytes)) : null;
    if (images.length !== n * bytes || (masks && masks.length !== n * bytes)) throw invalidParameterError('into', `buffers of ${n} x ${bytes} bytes`, into);
    if (this.#closed) throw new Error(`${this.path}: the image store is closed`);
    for (let k = 0; k < n; k++) {
      const i = indices[k]!;
      assertInteger('index', i, 0, this.count - 1);
      if (this.written[i] !== 1) throw new Error(`${this.path}: image ${i} (${this.header.ids[i]}) was never written (an interrupted conversion? rerun \`pneumo-native store\` to resume)`);
    }
    const reads = Array.from({ length: n }, (_, k) => this.#readOne(indices[k]!, images.subarray(k * bytes, (k + 1) * bytes), masks ? masks.subarray(k * bytes, (k + 1) * bytes) : null));
    await Promise.all(reads);
    return { images, masks };
  }

  /**
   * Reads images (and masks) `indices` into [B, 1, size, size] tensors natively (uint8, or float32
   * when normalising; masks uint8 0/255), on `device`.
   * @throws Error naming the file and the image: an index out of range, an image never written,
   *   a truncated file, a checksum mismatch
   */
  async readTensors(indices: ArrayLike<number>, options: StoreTensorOptions = {}): Promise<{ images: Tensor; masks: Tensor | null }> {
    if (this.#closed) throw new Error(`${this.path}: the image store is closed`);
    const list = Array.from(indices);
    if (options.size !== undefined) assertInteger('size', options.size, 1, 16384);
    const masks = options.masks ?? this.hasMasks;
    if (masks && !this.hasMasks) throw new Error(`${this.path}: the image store holds no masks (a test split's store?)`);
    this.#native ??= ensureRuntime().openImageStore(
      this.path,
      { size: this.size, count: this.count, images: this.header.layout.images, masks: this.header.layout.masks },
      this.checksums,
      this.written,
    );
    let read: Awaited<ReturnType<NativeImageStore['readBatch']>>;
    try {
      read = await this.#native.readBatch(list, {
        size: options.size ?? this.size,
        masks,
        normalize: options.normalize !== undefined,
        mean: options.normalize?.mean ?? 0,
        std: options.normalize?.std ?? 1,
        device: options.device ?? 'cpu',
        pinned: options.pinned ?? true,
      });
    } catch (err) {
      // Name the image's id beside its index, as the JavaScript reader does.
      const message = (err as Error).message.replace(/: image (\d+) (is damaged|was never written)/, (_m: string, i: string, what: string) => `: image ${i} (${this.header.ids[Number(i)] ?? '?'}) ${what}`);
      throw new Error(message, { cause: err });
    }
    return { images: new Tensor(read.images), masks: read.masks ? new Tensor(read.masks) : null };
  }

  async #readOne(i: number, image: Buffer, mask: Buffer | null): Promise<void> {
    const { layout } = this.header;
    await Promise.all([
      preadExactly(this.fd, image, 0, layout.imageBytes, layout.images + i * layout.imageBytes, this.path),
      mask ? preadExactly(this.fd, mask, 0, layout.imageBytes, layout.masks! + i * layout.imageBytes, this.path) : undefined,
    ]);
    const actual = recordChecksum(image, mask);
    if (actual !== this.checksums[i]) {
      throw new Error(`${this.path}: image ${i} (${this.header.ids[i]}) is damaged: checksum ${hex(actual)} where the file records ${hex(this.checksums[i]!)}; re-create the store (rerun \`pneumo-native store\`)`);
    }
  }

  /** Closes the file (idempotent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const native = this.#native;
    this.#native = null;
    if (native) await native.close();
    await new Promise<void>((resolve, reject) => closeFd(this.fd, (err) => (err ? reject(err) : resolve())));
  }
}

function buildHeader(options: CreateImageStoreOptions): ImageStoreHeader {
  assertInteger('size', options.size, 1, 1 << 15);
  if (!Array.isArray(options.ids) || options.ids.some((id) => typeof id !== 'string' || id === '')) throw invalidParameterError('ids', 'an array of non-empty strings', options.ids);
  const seen = new Set<string>();
  for (const id of options.ids) {
    if (seen.has(id)) throw invalidParameterError('ids', 'distinct image ids', `${id} twice`);
    seen.add(id);
  }
  if (typeof options.masks !== 'boolean') throw invalidParameterError('masks', 'true or false', options.masks);
  const count = options.ids.length;
  const imageBytes = options.size * options.size;
  const header: ImageStoreHeader = {
    format: 'pneumo-native images',
    version: IMAGE_STORE_VERSION,
    size: options.size,
    count,
    ids: [...options.ids],
    masks: options.masks,
    producer: options.producer ?? {},
    layout: { index: 0, checksums: 0, images: 0, masks: options.masks ? 0 : null, imageBytes },
  };
  // The offsets depend on the header's length, which depends on the offsets' digits: iterate.
  for (let k = 0; k < 4; k++) {
    const h = align(Buffer.byteLength(JSON.stringify(header)), 8);
    header.layout.index = 16 + h;
    header.layout.checksums = header.layout.index + align(count, 8);
    header.layout.images = align(header.layout.checksums + count * 4, PAGE);
    if (options.masks) header.layout.masks = align(header.layout.images + count * imageBytes, PAGE);
  }
  return header;
}

/** Images whose index bytes are set together, after one fdatasync (or 64 MiB, whichever first). */
const FLAG_GROUP_IMAGES = 256;

/**
 * An image store open for writing. `create` starts a new file or resumes a partial one with the
 * same ids, size, masks and producer; `write(i, image, mask?)` stores one image. An image counts
 * as written once its bytes and checksum are on disk (index bytes are set in groups after an
 * `fdatasync`, and by `close()`).
 */
export class ImageStoreWriter extends RecordWriter<ImageStoreHeader> {
  private constructor(path: string, header: ImageStoreHeader, fh: FileHandle, written: Uint8Array) {
    super(path, header, fh, written, FLAG_GROUP_IMAGES);
  }

  /**
   * Creates `path`, or with `resume` (default true) continues a partial store made with the same
   * ids, size, masks and producer; a different file at `path` is an error unless `overwrite`.
   * @throws FileWriteError naming `path` when the folder is read-only, missing or full
   */
  static async create(path: string, options: CreateImageStoreOptions & { resume?: boolean; overwrite?: boolean }): Promise<ImageStoreWriter> {
    return openRecordFile(path, buildHeader(options), options, {
      format: FORMAT,
      end: storeEnd,
      same: (old, header) =>
        old.size === header.size &&
        old.masks === header.masks &&
        JSON.stringify(old.ids) === JSON.stringify(header.ids) &&
        JSON.stringify(old.producer) === JSON.stringify(header.producer),
      differs: (p) => `${p} already holds other images (different ids, size, masks or producer): remove it, choose another --out, or pass --overwrite`,
      resume: (fh, old, written) => new ImageStoreWriter(path, old, fh, written),
      // Index and checksums written out (not sparse): recording an image never needs a new block.
      initialise: (fh, header) => writeFully(fh, Buffer.alloc(header.layout.images - header.layout.index), header.layout.index, path),
      fresh: (fh, header) => new ImageStoreWriter(path, header, fh, new Uint8Array(header.count)),
    });
  }

  /**
   * Stores image `index` (size x size uint8) and its mask (required exactly when the store has
   * masks), each write checked; recorded as written after the next flush.
   * @throws FileWriteError naming the file (full disk, I/O error); nothing is then recorded for it
   */
  async write(index: number, image: Uint8Array, mask?: Uint8Array | null): Promise<void> {
    assertInteger('index', index, 0, this.count - 1);
    const { layout } = this.header;
    if (!(image instanceof Uint8Array) || image.length !== layout.imageBytes) throw invalidParameterError('image', `${layout.imageBytes} bytes (${this.header.size} x ${this.header.size})`, image);
    if (this.header.masks && (!(mask instanceof Uint8Array) || mask.length !== layout.imageBytes)) throw invalidParameterError('mask', `${layout.imageBytes} bytes`, mask);
    if (!this.header.masks && mask) throw invalidParameterError('mask', 'nothing (the store has no masks)', mask);
    const bytes = image.length * (this.header.masks ? 2 : 1);
    await this.flags.record(
      index,
      bytes,
      async () => {
        const sum = Buffer.alloc(4);
        sum.writeUInt32LE(recordChecksum(image, this.header.masks ? mask! : null), 0);
        await writeFully(this.fh, image, layout.images + index * layout.imageBytes, this.path);
        if (this.header.masks) await writeFully(this.fh, mask!, layout.masks! + index * layout.imageBytes, this.path);
        await writeFully(this.fh, sum, layout.checksums + index * 4, this.path);
      },
      'store',
    );
  }
}

/** The store path of a split inside a prepared folder (`<dir>/train.pnimg`). */
export function storePath(dir: string, split: 'train' | 'test'): string {
  return join(dir, `${split}${STORE_EXTENSION}`);
}

/** Options of {@link convertToStore}. */
export interface ConvertOptions {
  /** A `prepare` folder (train/ + mask/, and/or test/). */
  dir: string;
  /** Which split: 'train' (images and masks) or 'test' (images only). */
  split: 'train' | 'test';
  /** Output store (default `<dir>/<split>.pnimg`). */
  out?: string;
  /** Start over when `out` holds something else or is damaged. */
  overwrite?: boolean;
  /** Images decoded per batch (default 32). */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface ConvertReport {
  out: string;
  split: 'train' | 'test';
  size: number;
  count: number;
  /** Written in this run. */
  written: number;
  /** Already in the store from an earlier run. */
  skipped: number;
  seconds: number;
}

/**
 * Converts a prepared PNG folder split to an image store: every image (and mask, for train) is
 * decoded natively (`readImageBatch`) at the prepared size and written at its index. Resumable:
 * a rerun writes only the images an interrupted one did not record.
 * @throws Error naming the folder or a file that cannot be read; FileWriteError naming the store
 */
export async function convertToStore(options: ConvertOptions): Promise<ConvertReport> {
  const started = Date.now();
  const { dir, split } = options;
  const batchSize = options.batch ?? 32;
  assertInteger('batch', batchSize, 1, 4096);
  if (split !== 'train' && split !== 'test') throw invalidParameterError('split', '"train" or "test"', split);
  const imageDir = join(dir, split);
  const list = async (d: string): Promise<string[]> => {
    try {
      return (await readdir(d)).filter((f) => /\.png$/i.test(f)).sort();
    } catch (err) {
      throw new Error(`${d}: cannot list the prepared ${basename(d)}/ folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); is ${dir} a \`prepare\` folder?`, { cause: err });
    }
  };
  const files = await list(imageDir);
  if (files.length === 0) throw new Error(`${imageDir} holds no PNG images to convert`);
  const masks = split === 'train';
  if (masks) {
    const maskFiles = new Set(await list(join(dir, 'mask')));
    const missing = files.filter((f) => !maskFiles.has(f));
    if (missing.length > 0) throw new Error(`${join(dir, 'mask')} lacks the masks of ${missing.length} training images: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  }
  const ids = files.map((f) => f.replace(/\.png$/i, ''));
  const { readImageBatch } = await import('./batch.js');
  const sharp = (await import('sharp')).default;
  const meta = await sharp(join(imageDir, files[0]!)).metadata();
  const size = meta.width ?? 0;
  if (!size || meta.height !== size) throw new Error(`${join(imageDir, files[0]!)}: prepared images are square, this one is ${meta.width}x${meta.height}`);
  let manifest: unknown = null;
  try {
    manifest = JSON.parse(await (await import('node:fs/promises')).readFile(join(dir, 'prepare.json'), 'utf8'));
  } catch {
    // A folder not written by prepare (no manifest) converts too.
  }
  const out = options.out ?? storePath(dir, split);
  const writer = await ImageStoreWriter.create(out, { ids, size, masks, producer: { command: 'store', split, ...(manifest ? { prepare: manifest } : {}) }, overwrite: options.overwrite });
  const pending = writer.pending();
  const report: ConvertReport = { out, split, size, count: ids.length, written: 0, skipped: ids.length - pending.length, seconds: 0 };
  options.onProgress?.(report.skipped, ids.length);
  try {
    for (let start = 0; start < pending.length; start += batchSize) {
      const chunk = pending.slice(start, start + batchSize);
      const imgs = await readImageBatch(chunk.map((i) => join(imageDir, files[i]!)), { size });
      const msks = masks ? await readImageBatch(chunk.map((i) => join(dir, 'mask', files[i]!)), { size, threshold: true }).catch((err: unknown) => {
        imgs.dispose();
        throw err;
      }) : null;
      const imageBytes = imgs.takeData('uint8');
      const maskBytes = msks ? msks.takeData('uint8') : null;
      const plane = size * size;
      for (let k = 0; k < chunk.length; k++) {
        await writer.write(chunk[k]!, imageBytes.subarray(k * plane, (k + 1) * plane), maskBytes ? maskBytes.subarray(k * plane, (k + 1) * plane) : null);
        report.written += 1;
      }
      options.onProgress?.(report.skipped + report.written, ids.length);
    }
  } finally {
    await writer.close();
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}
