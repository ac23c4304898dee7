/**
 * The one path by which pneumo-native writes files: nothing is left half-written under a final
 * name, a full disk is never mistaken for success, and every failure names the file and why.
 *
 * - A new file goes to a temporary file in the target's own folder, named
 *   `.pneumo-tmp-<name>.<pid>.<random>` (so a rename is atomic and stale ones are recognisable),
 *   is written completely (every `write` checked for the bytes it reports; a write that makes no
 *   progress is an error), flushed to disk (`fsync`), then renamed onto the target, and the folder
 *   is flushed so that the rename itself survives a crash.
 * - Files updated in place (the map store) write through {@link writeFully} and flush with
 *   {@link syncFile} before they record anything as written.
 * - `ENOSPC`, `EDQUOT`, `EROFS`, `EACCES`, `EPERM` and other file-system failures become one
 *   {@link FileWriteError} naming the target file and the cause; the temporary file is removed.
 * - Temporary files left by a process that no longer runs (`kill -9`, a crash) are removed the
 *   first time this process writes into the same folder ({@link cleanStaleTemps}).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Prefix of every temporary file pneumo-native writes. */
export const TEMP_PREFIX = '.pneumo-tmp-';

const REASONS: Readonly<Record<string, string>> = {
  ENOSPC: 'no space left on the device (ENOSPC): the disk is full',
  EDQUOT: 'the disk quota is exceeded (EDQUOT)',
  EROFS: 'the file system is read-only (EROFS)',
  EACCES: 'permission denied (EACCES)',
  EPERM: 'operation not permitted (EPERM)',
  ENOENT: 'its folder does not exist (ENOENT)',
  ENOTDIR: 'a part of its path is not a folder (ENOTDIR)',
  EISDIR: 'it is a folder (EISDIR)',
  EFBIG: 'the file is too large for the file system (EFBIG)',
  EIO: 'an input/output error (EIO)',
  EMFILE: 'too many open files (EMFILE)',
  ENAMETOOLONG: 'the name is too long (ENAMETOOLONG)',
  SHORT_WRITE: 'a write stopped short and made no progress (the device is probably full)',
};

/** The human reason for an errno code (`ENOSPC` -> "no space left on the device (ENOSPC) ..."). */
export function describeWriteCode(code: string): string {
  return REASONS[code] ?? code;
}

/**
 * A file could not be written completely. `path` is the file the caller asked for (never the
 * temporary file), `code` the errno code (`ENOSPC`, `EROFS`, `EACCES`, ...) or `SHORT_WRITE`.
 * Nothing is left at `path` that was not there before (or, for files updated in place, nothing is
 * marked as written that is not on disk).
 */
export class FileWriteError extends Error {
  constructor(
    /** The file that could not be written. */
    readonly path: string,
    /** `ENOSPC`, `EDQUOT`, `EROFS`, `EACCES`, `EPERM`, ..., or `SHORT_WRITE`. */
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot write ${path}: ${describeWriteCode(code)}`, options);
    this.name = 'FileWriteError';
  }
}

const ERRNO_AT_END = /\((E[A-Z]{2,15})\)\s*$/;

/**
 * `err` as a {@link FileWriteError} for `path` when it is a file-system failure (an errno error
 * from Node, or a native error ending in "(ECODE)"), else `err` unchanged.
 */
export function asFileWriteError(err: unknown, path: string): unknown {
  if (err instanceof FileWriteError) return err.path === path ? err : new FileWriteError(path, err.code, { cause: err });
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && /^E[A-Z]{2,15}$/.test(code)) return new FileWriteError(path, code, { cause: err });
  const m = err instanceof Error ? ERRNO_AT_END.exec(err.message) : null;
  if (m) return new FileWriteError(path, m[1]!, { cause: err });
  return err;
}

/** A fresh temporary path in the folder of `path`: `.pneumo-tmp-<name>.<pid>.<random>`. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `${TEMP_PREFIX}${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}`);
}

/** The pid that wrote a temporary file of ours, or of an older pneumo-native (`name.tmp-PID[-N]`), else null. */
function tempOwner(name: string): number | null {
  const ours = name.startsWith(TEMP_PREFIX) ? /\.(\d+)\.[0-9a-f]+$/.exec(name) : null;
  const legacy = ours ? null : /\.tmp-(\d+)(?:-\d+)*$/.exec(name);
  const pid = Number((ours ?? legacy)?.[1]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

/**
 * Whether `pid` may still be writing its temporary files: a running process, and (where /proc
 * tells) a Node process: a pid reused by anything else (a kernel thread, a shell) is not ours.
 */
function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return /node|pneumo/i.test(readFileSync(`/proc/${pid}/comm`, 'utf8'));
  } catch {
    return true; // no /proc: assume it is ours
  }
}

/**
 * Removes temporary files that pneumo-native processes no longer running left in `dir`
 * (`.pneumo-tmp-*`, and an older version's `*.tmp-<pid>`). A missing folder is not an error.
 * @returns the names removed
 */
export async function cleanStaleTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = tempOwner(name);
    if (pid === null || isAlive(pid)) continue;
    try {
      const info = await stat(join(dir, name));
      if (!info.isFile()) continue;
      await rm(join(dir, name), { force: true });
      removed.push(name);
    } catch {
      // Another process may be cleaning the same folder.
    }
  }
  return removed;
}

/**
 * Creates `dir` and its parents (like `mkdir -p`). Node reports ENOENT when a parent is on a
 * read-only file system or not writable; here the real cause is found (EROFS, EACCES, ...) by
 * creating the first missing folder alone.
 * @throws FileWriteError naming `dir` and the cause
 */
export async function makeDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw asFileWriteError(err, dir);
  }
  // Walk up to the deepest folder that exists, then create the next one by itself.
  let missing = dir;
  for (;;) {
    const parent = dirname(missing);
    if (parent === missing) break;
    const exists = await stat(parent).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (exists) break;
    missing = parent;
  }
  try {
    await mkdir(missing);
  } catch (err) {
    throw asFileWriteError(err, dir);
  }
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw asFileWriteError(err, dir);
  }
}

const cleanedDirs = new Map<string, Promise<unknown>>();

/** Cleans `dir` of stale temporary files once per process (the first write into it). */
function cleanOnce(dir: string): Promise<unknown> {
  let done = cleanedDirs.get(dir);
  if (!done) {
    done = cleanStaleTemps(dir).catch(() => undefined);
    cleanedDirs.set(dir, done);
  }
  return done;
}

/**
 * Writes all of `data` at `position` (or the current position with null), looping over short
 * writes; a write that makes no progress is a {@link FileWriteError} (`SHORT_WRITE`), errno
 * errors become one naming `path`.
 */
export async function writeFully(fh: FileHandle, data: Uint8Array, position: number | null, path: string): Promise<void> {
  let done = 0;
  try {
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done, position === null ? null : position + done);
      if (!(bytesWritten > 0)) throw new FileWriteError(path, 'SHORT_WRITE');
      done += bytesWritten;
    }
  } catch (err) {
    throw asFileWriteError(err, path);
  }
}

/** Flushes a file's data and metadata to disk; errors name `path`. */
export async function syncFile(fh: FileHandle, path: string): Promise<void> {
  try {
    await fh.sync();
  } catch (err) {
    throw asFileWriteError(err, path);
  }
}

/** Flushes a folder (so a rename into it survives a crash); file systems that cannot are ignored. */
async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Some file systems refuse fsync on a folder; the rename itself has happened.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

function toBytes(chunk: string | Uint8Array): Uint8Array {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}

/**
 * A file written through a temporary file: `write` appends (checked), `commit` flushes and renames
 * it onto the target, `abort` removes it. Nothing appears at `path` before `commit` succeeds.
 */
export class AtomicFile {
  #closed = false;
  #bytes = 0;

  private constructor(
    /** The target. */
    readonly path: string,
    /** The temporary file being written. */
    readonly tempPath: string,
    private readonly fh: FileHandle,
  ) {}

  /** Opens a temporary file next to `path` (whose folder must exist). */
  static async open(path: string, options: { mode?: number } = {}): Promise<AtomicFile> {
    await cleanOnce(dirname(path));
    const tempPath = tempPathFor(path);
    let fh: FileHandle;
    try {
      fh = await open(tempPath, 'wx', options.mode ?? 0o666);
    } catch (err) {
      throw asFileWriteError(err, path);
    }
    return new AtomicFile(path, tempPath, fh);
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Appends `chunk` completely (strings as UTF-8). */
  async write(chunk: string | Uint8Array): Promise<void> {
    if (this.#closed) throw new Error(`${this.path}: the file is already committed or aborted`);
    const bytes = toBytes(chunk);
    try {
      await writeFully(this.fh, bytes, null, this.path);
    } catch (err) {
      await this.abort();
      throw err;
    }
    this.#bytes += bytes.length;
  }

  /** Checks the size on disk, flushes, closes and renames onto the target. */
  async commit(): Promise<void> {
    if (this.#closed) throw new Error(`${this.path}: the file is already committed or aborted`);
    this.#closed = true;
    try {
      const { size } = await this.fh.stat();
      if (size !== this.#bytes) throw new FileWriteError(this.path, 'SHORT_WRITE');
      await this.fh.sync();
      await this.fh.close();
      await rename(this.tempPath, this.path);
    } catch (err) {
      await this.fh.close().catch(() => undefined);
      await rm(this.tempPath, { force: true }).catch(() => undefined);
      throw asFileWriteError(err, this.path);
    }
    await syncDir(dirname(this.path));
  }

  /** Discards the temporary file; the target is left as it was. Idempotent. */
  async abort(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.fh.close().catch(() => undefined);
    await rm(this.tempPath, { force: true }).catch(() => undefined);
  }
}

/**
 * Writes `data` (text as UTF-8, bytes, or a sequence of either) to `path` atomically: a temporary
 * file in the same folder, written completely, flushed, renamed onto `path`.
 * @throws FileWriteError naming `path` and the cause (ENOSPC, EROFS, EACCES, ...)
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array | Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>, options: { mode?: number } = {}): Promise<void> {
  const file = await AtomicFile.open(path, options);
  try {
    if (typeof data === 'string' || data instanceof Uint8Array) await file.write(data);
    else for await (const chunk of data) await file.write(chunk);
  } catch (err) {
    await file.abort();
    throw err;
  }
  await file.commit();
}

/**
 * For writers that take a file name (native checkpoint saves, libraries): `produce(tempPath)`
 * writes the temporary file, which is then checked (it must exist, and hold `expectBytes` bytes
 * when given), flushed and renamed onto `path`. On any failure it is removed.
 * @throws FileWriteError naming `path` for file-system failures; other errors of `produce` as they are
 */
export async function replaceAtomic(path: string, produce: (tempPath: string) => Promise<void>, options: { expectBytes?: number } = {}): Promise<void> {
  await cleanOnce(dirname(path));
  const tempPath = tempPathFor(path);
  try {
    await produce(tempPath);
    const fh = await open(tempPath, 'r+');
    try {
      if (options.expectBytes !== undefined) {
        const { size } = await fh.stat();
        if (size !== options.expectBytes) throw new FileWriteError(path, 'SHORT_WRITE');
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tempPath, path);
  } catch (err) {
    await rm(tempPath, { force: true }).catch(() => undefined);
    throw asFileWriteError(err, path);
  }
  await syncDir(dirname(path));
}

/** Copies `from` to `to` atomically (read whole: for checkpoints and small files). */
export async function copyFileAtomic(from: string, to: string): Promise<void> {
  const file = await AtomicFile.open(to);
  let src: FileHandle | undefined;
  try {
    src = await open(from, 'r');
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await src.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      await file.write(buffer.subarray(0, bytesRead));
    }
  } catch (err) {
    await file.abort();
    throw err;
  } finally {
    await src?.close().catch(() => undefined);
  }
  await file.commit();
}
