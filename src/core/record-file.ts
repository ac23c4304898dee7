/**
 * What the project's two record files share: the image store (`.pnimg`, `data/image-store.ts`)
 * and the map store (`.pnm`, `inference/maps.ts`). Both are one file of fixed-size records:
 *
 *   0   8-byte magic
 *   8   uint32 header bytes (H), uint32 CRC-32 of the H header bytes
 *   16  JSON header (H bytes, padded with spaces to `layout.index`): count, ids, layout, ...
 *   ..  index: one byte per record, 1 once the record is written; then the format's regions
 *
 * This module reads and checks that preamble, writes it, opens a file for writing (a new one, or
 * a partial one with the same header resumed), and keeps the writers' promise: a record's index
 * byte is set only after its bytes are flushed (`fdatasync`, in groups), so an interrupted or
 * failed run never leaves a record marked written that is not.
 */
import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { asFileWriteError, cleanStaleTemps, syncFile, writeFully } from './atomic-write.js';
import { crc32 } from './checksum.js';

/** The header fields every record file has. */
export interface RecordHeader {
  version: number;
  count: number;
  ids: string[];
  layout: { index: number };
}

/** How one record format names itself in errors and checks its header. */
export interface RecordFormat<H extends RecordHeader> {
  /** The 8-byte magic. */
  magic: Buffer;
  /** What the file is called in messages: "image store", "map file". */
  noun: string;
  /** What a file with another magic should have been: "a .pnimg file written by ...". */
  expected: string;
  /** How to repair a damaged header: "re-create the store (rerun ...)". */
  remedy: string;
  /** Appended to a truncated-read message ("; re-create it (...)", or ""). */
  truncatedHint: string;
  /** Whether every version checksums its header (then it is checked before parsing). */
  checksumAlways: boolean;
  /** Throws when this version cannot be read. */
  checkVersion(header: H, path: string): void;
  /** With checksumAlways false: whether this (parsed, version-checked) header has a checksum. */
  hasChecksum(header: H): boolean;
  /** Throws (badHeader) when the header is inconsistent. */
  check(header: H, path: string): void;
}

const hex = (v: number) => `0x${v.toString(16).padStart(8, '0')}`;

/** A damaged or inconsistent header, named with the file and the remedy. */
export function badHeader(format: RecordFormat<RecordHeader> | { noun: string; remedy: string }, path: string, what: string): Error {
  return new Error(`${path}: the ${format.noun} header is damaged (${what}); ${format.remedy}`);
}

/** Reads `length` bytes at `position` into `buffer` at `offset`; a short file is an error naming it. */
export async function readInto(
  fh: FileHandle,
  buffer: Uint8Array,
  offset: number,
  length: number,
  position: number,
  path: string,
  format: { noun: string; truncatedHint: string },
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buffer, offset + done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`${path}: the ${format.noun} ends early (truncated at byte ${position + done}, expected ${position + length})${format.truncatedHint}`);
    done += bytesRead;
  }
}

/** `length` bytes at `position`, as a new Buffer. */
export async function readAt(fh: FileHandle, length: number, position: number, path: string, format: { noun: string; truncatedHint: string }): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  await readInto(fh, buffer, 0, length, position, path, format);
  return buffer;
}

/**
 * Reads and checks the preamble and header: the magic, the header length against the file, the
 * header's CRC-32 (always first, or once the version says there is one), the JSON, the version and
 * the format's own consistency checks. Every failure names the file.
 */
export async function readRecordHeader<H extends RecordHeader>(fh: FileHandle, path: string, format: RecordFormat<H>): Promise<H> {
  const { size } = await fh.stat();
  if (size < 16) throw new Error(`${path}: not a pneumo-native ${format.noun} (shorter than its 16-byte preamble)`);
  const head = await readAt(fh, 16, 0, path, format);
  if (!head.subarray(0, 8).equals(format.magic)) throw new Error(`${path}: not a pneumo-native ${format.noun} (bad magic; expected ${format.expected})`);
  const length = head.readUInt32LE(8);
  if (length > size - 16) throw badHeader(format, path, `its length ${length} runs past the end of the ${size}-byte file`);
  const bytes = await readAt(fh, length, 16, path, format);
  const verify = () => {
    const stored = head.readUInt32LE(12);
    const actual = crc32(bytes);
    if (stored !== actual) throw badHeader(format, path, `checksum ${hex(actual)} where the file records ${hex(stored)}`);
  };
  if (format.checksumAlways) verify();
  let header: H;
  try {
    header = JSON.parse(bytes.toString('utf8')) as H;
  } catch (err) {
    throw badHeader(format, path, `not valid JSON: ${(err as Error).message}`);
  }
  if (typeof header !== 'object' || header === null) throw badHeader(format, path, 'not a JSON object');
  format.checkVersion(header, path);
  if (!format.checksumAlways && format.hasChecksum(header)) verify();
  format.check(header, path);
  return header;
}

/** Writes the preamble and the header (padded with spaces to `layout.index`) of a new file. */
export async function writeRecordPreamble(fh: FileHandle, path: string, magic: Buffer, header: RecordHeader): Promise<void> {
  const json = Buffer.from(JSON.stringify(header).padEnd(header.layout.index - 16, ' '), 'utf8');
  const preamble = Buffer.alloc(16);
  magic.copy(preamble, 0);
  preamble.writeUInt32LE(json.length, 8);
  preamble.writeUInt32LE(crc32(json), 12);
  await writeFully(fh, preamble, 0, path);
  await writeFully(fh, json, 16, path);
}

/** What `openRecordFile` needs of a format to create or resume one of its files. */
export interface RecordFileSpec<H extends RecordHeader, W> {
  format: RecordFormat<H>;
  /** The byte length the header plans (the end of the last region). */
  end(header: H): number;
  /** Whether a file's header describes the same records (ids, sizes, producer, ...). */
  same(old: H, header: H): boolean;
  /** The message for a file that holds other records (`old` null: its header could not be read). */
  differs(path: string, old: H | null): string;
  /** A writer continuing `fh` (its `written` flags read from the file). */
  resume(fh: FileHandle, old: H, written: Uint8Array): W;
  /** Writes a new file's regions after the preamble (written by `openRecordFile`); before truncate. */
  initialise(fh: FileHandle, header: H): Promise<void>;
  /** A writer for a new file. */
  fresh(fh: FileHandle, header: H): W;
}

/**
 * Creates `path` for `header`, or with `resume` (default true) continues a partial file made with
 * the same records; a different or unreadable file at `path` is an error unless `overwrite`.
 * A new file is written out to its index (and whatever `initialise` writes), then extended to its
 * full length (sparse) so that readers can tell a truncated file from a partial one.
 * @throws FileWriteError naming `path` when the folder is read-only, missing or full
 */
export async function openRecordFile<H extends RecordHeader, W>(path: string, header: H, options: { resume?: boolean; overwrite?: boolean }, spec: RecordFileSpec<H, W>): Promise<W> {
  await cleanStaleTemps(dirname(path));
  const exists = await stat(path).then(
    () => true,
    () => false,
  );
  if (exists && (options.resume ?? true)) {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r+');
    } catch (err) {
      throw asFileWriteError(err, path);
    }
    let reuse: W | null = null;
    try {
      let old: H | null = null;
      try {
        old = await readRecordHeader(fh, path, spec.format);
      } catch (err) {
        if (!options.overwrite) throw new Error(`${(err as Error).message}: remove it, choose another --out, or pass --overwrite`);
      }
      if (old !== null && spec.same(old, header)) {
        const { size } = await fh.stat();
        const end = spec.end(old);
        if (size < end && !options.overwrite) {
          throw new Error(`${path}: the ${spec.format.noun} is truncated (${size} bytes, its header needs ${end}): remove it, choose another --out, or pass --overwrite`);
        }
        if (size >= end) reuse = spec.resume(fh, old, new Uint8Array(await readAt(fh, old.count, old.layout.index, path, spec.format)));
      } else if (!options.overwrite) {
        throw new Error(spec.differs(path, old));
      }
    } finally {
      if (reuse === null) await fh.close();
    }
    if (reuse !== null) return reuse;
  } else if (exists && !options.overwrite) {
    throw new Error(`${path} already exists: remove it, choose another --out, or pass --overwrite`);
  }
  let fh: FileHandle;
  try {
    fh = await open(path, 'w+');
  } catch (err) {
    throw asFileWriteError(err, path);
  }
  try {
    await writeRecordPreamble(fh, path, spec.format.magic, header);
    await spec.initialise(fh, header);
    await fh.truncate(spec.end(header));
    await syncFile(fh, path);
    return spec.fresh(fh, header);
  } catch (err) {
    await fh.close();
    throw asFileWriteError(err, path);
  }
}

/**
 * A writer's record-keeping: records whose bytes are written wait in a group; `flush` makes them
 * durable (`fdatasync`) and only then sets their index bytes. After a failed write nothing more is
 * accepted (reopen the file to resume).
 */
export class RecordFlags {
  #unflagged: number[] = [];
  #unflaggedBytes = 0;
  #failed = false;

  constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    /** The index region's offset. */
    private readonly index: number,
    /** 1 per record recorded as written (from a previous run too). */
    readonly written: Uint8Array,
    private readonly groupRecords: number,
    private readonly groupBytes = 64 << 20,
  ) {}

  /** Records recorded as written so far. */
  get writtenCount(): number {
    let n = 0;
    for (const v of this.written) n += v;
    return n;
  }

  /** Indices neither recorded nor waiting for the next flush, in order. */
  pending(): number[] {
    const waiting = new Set(this.#unflagged);
    const out: number[] = [];
    for (let i = 0; i < this.written.length; i++) if (this.written[i] !== 1 && !waiting.has(i)) out.push(i);
    return out;
  }

  /**
   * Runs `write` (the record's positional writes); a failure marks the writer failed. Then the
   * record waits for the next flush, which runs once a group is full.
   */
  async record(index: number, bytes: number, write: () => Promise<void>, what: string): Promise<void> {
    if (this.#failed) throw new Error(`${this.path}: an earlier write failed; reopen the ${what} to resume`);
    try {
      await write();
    } catch (err) {
      this.#failed = true;
      throw err;
    }
    this.#unflagged.push(index);
    this.#unflaggedBytes += bytes;
    if (this.#unflagged.length >= this.groupRecords || this.#unflaggedBytes >= this.groupBytes) await this.flush();
  }

  /** Flushes what is written (`fdatasync`), then records those records as written. */
  async flush(): Promise<void> {
    if (this.#unflagged.length === 0) return;
    const indices = this.#unflagged;
    try {
      await this.fh.datasync();
      const flag = Uint8Array.of(1);
      for (const i of indices) await writeFully(this.fh, flag, this.index + i, this.path);
    } catch (err) {
      this.#failed = true;
      throw asFileWriteError(err, this.path);
    }
    for (const i of indices) this.written[i] = 1;
    this.#unflagged = [];
    this.#unflaggedBytes = 0;
  }

  /** Records every complete record as written, flushes to disk and closes the file. */
  async close(): Promise<void> {
    try {
      await this.flush();
      await syncFile(this.fh, this.path);
    } finally {
      await this.fh.close();
    }
  }
}

/**
 * The writers' common surface (ImageStoreWriter, MapWriter): the header, the written flags and
 * their flushing; a subclass adds its `create` and the record writes (through `flags.record`).
 */
export abstract class RecordWriter<H extends RecordHeader> {
  protected readonly flags: RecordFlags;

  protected constructor(
    readonly path: string,
    readonly header: H,
    protected readonly fh: FileHandle,
    /** 1 per record recorded as written (from a previous run too). */
    readonly written: Uint8Array,
    groupRecords: number,
  ) {
    this.flags = new RecordFlags(fh, path, header.layout.index, written, groupRecords);
  }

  get ids(): readonly string[] {
    return this.header.ids;
  }
  get count(): number {
    return this.header.count;
  }
  /** Records recorded as written so far (including a previous run's). */
  get writtenCount(): number {
    return this.flags.writtenCount;
  }
  /** Indices not yet written, in order. */
  pending(): number[] {
    return this.flags.pending();
  }
  /** Flushes what is written (`fdatasync`), then records it as written. Also run every group. */
  async flush(): Promise<void> {
    await this.flags.flush();
  }
  /**
   * Records every complete record as written, flushes to disk and closes. After a failed write,
   * only the records written before it are recorded (a rerun resumes from there).
   */
  async close(): Promise<void> {
    await this.flags.close();
  }
}
