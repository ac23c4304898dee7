/**
 * Pretrained encoder weights (`encoderWeights: 'imagenet'`): the upstream files the seeds started
 * from (models/registry.json: address, file name, checksum), downloaded natively from Node with
 * progress, verified, and kept in a cache folder.
 *
 * - Cache: `$PNEUMO_CACHE_DIR/weights/` (default `$XDG_CACHE_HOME/pneumo-native/weights/`, else
 *   `~/.cache/pneumo-native/weights/`). A file there (downloaded, or copied in by hand) is
 *   verified once and then used without any network access.
 * - Mirror: `PNEUMO_WEIGHTS_MIRROR` replaces the upstream hosts: the file is fetched from
 *   `<mirror>/<file name>` (an http(s) base address, a `file://` address or a folder).
 * - Atomic and resumable: bytes go to `<file>.part` (an interrupted download resumes from it with
 *   an HTTP Range request), the checksum is checked, and only then is the file renamed into place;
 *   a mismatch deletes the partial file. A lock file keeps two processes from fetching the same
 *   file at once.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encoder as encoderEntry, registry } from './registry.js';
import type { PretrainedEntry } from './registry.js';

/** Where a download stands (for progress bars). */
export interface WeightsProgress {
  encoder: string;
  file: string;
  /** Bytes on disk so far (including those of a resumed partial file). */
  received: number;
  /** The file's size when the server says it; null otherwise. */
  total: number | null;
  /** Bytes already there when this download started (a resumed partial file). */
  resumedFrom: number;
  /** True on the last call of a download. */
  done: boolean;
}

export interface FetchWeightsOptions {
  /**
   * Progress callback. Default: a progress line on stderr while a download runs (nothing is
   * printed on a cache hit); `false` prints nothing.
   */
  onProgress?: ((progress: WeightsProgress) => void) | false;
  /** Cache folder (default: see `weightsCacheDir`). */
  cacheDir?: string;
  /** Mirror base (default: `PNEUMO_WEIGHTS_MIRROR`; null: the upstream address). */
  mirror?: string | null;
  /** Seconds without data before a download is abandoned (default 60). */
  idleTimeoutS?: number;
}

export interface FetchedWeights {
  encoder: string;
  kind: string;
  path: string;
  /** The file's full SHA-256 (hex). */
  sha256: string;
  /** Whether it was downloaded now (false: found in the cache). */
  downloaded: boolean;
  /** Where it was downloaded from (null on a cache hit). */
  url: string | null;
}

/** A checksum that does not match the registry's; the message names file, expected and actual. */
export class ChecksumMismatchError extends Error {
  constructor(
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
    where: string,
  ) {
    super(`Checksum mismatch for ${file} (${where}): expected SHA-256 ${expected.length < 64 ? `starting with ${expected}` : expected} but the file has ${actual}`);
    this.name = 'ChecksumMismatchError';
  }
}

/** The cache folder for weights: `$PNEUMO_CACHE_DIR/weights`, else under the user's cache directory. */
export function weightsCacheDir(): string {
  const root = process.env.PNEUMO_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'pneumo-native');
  return join(resolve(root), 'weights');
}

/** The registry's pretrained entry `kind` of `encoder`; throws naming what exists. */
export function pretrainedEntry(encoder: string, kind = 'imagenet'): PretrainedEntry {
  const entry = encoderEntry(encoder).pretrained.get(kind);
  if (!entry) {
    const known = [...registry().encoders.values()].filter((e) => e.pretrained.has(kind)).map((e) => e.name);
    throw new TypeError(`Expected an encoder with ${kind} weights (${known.join(', ')}) but received ${JSON.stringify(encoder)}`);
  }
  return entry;
}

/** Whether a hex SHA-256 satisfies an entry (full hash, or the recorded prefix). */
export function checksumMatches(sha256: string, entry: Pick<PretrainedEntry, 'sha256' | 'sha256Prefix'>): boolean {
  return entry.sha256 !== undefined ? sha256 === entry.sha256 : sha256.startsWith(entry.sha256Prefix ?? '\u0000');
}

function expectedChecksum(entry: Pick<PretrainedEntry, 'sha256' | 'sha256Prefix'>): string {
  return entry.sha256 ?? entry.sha256Prefix ?? '';
}

/** Where `entry` is fetched from: the mirror (`<mirror>/<file>`) when one is set, else upstream. */
export function weightsSource(entry: PretrainedEntry, mirror: string | null | undefined = process.env.PNEUMO_WEIGHTS_MIRROR): string {
  if (!mirror) return entry.url;
  if (/^https?:\/\//.test(mirror) || mirror.startsWith('file://')) return `${mirror.replace(/\/+$/, '')}/${entry.file}`;
  return join(resolve(mirror), entry.file);
}

async function sha256File(path: string, limit?: number): Promise<string> {
  const hash = createHash('sha256');
  const stream = createReadStream(path, limit === undefined ? {} : { end: limit - 1 });
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

interface Sidecar {
  sha256: string;
  size: number;
  mtimeMs: number;
  source: string;
}

function sidecarPath(path: string): string {
  return `${path}.verified.json`;
}

/** A cached file already verified (size and mtime unchanged since): no hashing needed. */
async function trustedSidecar(path: string, entry: PretrainedEntry): Promise<Sidecar | null> {
  try {
    const [s, side] = await Promise.all([stat(path), readFile(sidecarPath(path), 'utf8')]);
    const sidecar = JSON.parse(side) as Sidecar;
    if (sidecar.size === s.size && sidecar.mtimeMs === s.mtimeMs && checksumMatches(sidecar.sha256, entry)) return sidecar;
  } catch {
    // no sidecar, or the file is gone
  }
  return null;
}

async function writeSidecar(path: string, sha256: string, source: string): Promise<void> {
  const s = await stat(path);
  const sidecar: Sidecar = { sha256, size: s.size, mtimeMs: s.mtimeMs, source };
  const tmp = `${sidecarPath(path)}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(sidecar)}\n`);
  await rename(tmp, sidecarPath(path));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes `<file>.lock` (waiting while another live process holds it); returns the release. */
async function lock(path: string, onWait: (pid: number) => void): Promise<() => Promise<void>> {
  const lockPath = `${path}.lock`;
  let announced = false;
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return async () => {
        await rm(lockPath, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = NaN;
    try {
      holder = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
    } catch {
      continue; // released meanwhile
    }
    if (!Number.isInteger(holder) || holder === process.pid || !pidAlive(holder)) {
      await rm(lockPath, { force: true }); // stale: its process is gone
      continue;
    }
    if (!announced) onWait(holder);
    announced = true;
    await new Promise((r) => setTimeout(r, 500));
  }
}

function stderrProgress(): (p: WeightsProgress) => void {
  let last = 0;
  const tty = process.stderr.isTTY === true;
  const mb = (n: number): string => (n / 1e6).toFixed(1);
  return (p) => {
    const now = Date.now();
    if (!p.done && now - last < (tty ? 200 : 3000)) return;
    last = now;
    const pct = p.total ? ` (${Math.floor((100 * p.received) / p.total)}%)` : '';
    const line = `${p.file}: ${mb(p.received)}${p.total ? `/${mb(p.total)}` : ''} MB${pct}${p.resumedFrom ? `, resumed at ${mb(p.resumedFrom)} MB` : ''}${p.done ? ', done' : ''}`;
    process.stderr.write(tty ? `\r${line}${p.done ? '\n' : ''}` : `${line}\n`);
  };
}

function requestOnce(url: string, headers: Record<string, string>, idleTimeoutS: number): Promise<IncomingMessage> {
  return new Promise((resolvePromise, reject) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet;
    const req = get(url, { headers }, resolvePromise);
    req.setTimeout(idleTimeoutS * 1000, () => req.destroy(new Error(`no data for ${idleTimeoutS} s`)));
    req.on('error', reject);
  });
}

/** The response for `url` after following redirects (the upstream hosts redirect to CDNs). */
async function request(url: string, headers: Record<string, string>, idleTimeoutS: number): Promise<{ res: IncomingMessage; url: string }> {
  let current = url;
  for (let hop = 0; hop <= 5; hop++) {
    const res = await requestOnce(current, headers, idleTimeoutS);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      current = new URL(res.headers.location, current).toString();
      continue;
    }
    return { res, url: current };
  }
  throw new Error(`too many redirects from ${url}`);
}

function networkHint(file: string, cacheDir: string): string {
  return (
    `without network access, copy ${file} into ${cacheDir} (it is verified there), ` +
    `set PNEUMO_WEIGHTS_MIRROR to a mirror that holds it, or give a file path instead of "imagenet"`
  );
}

/**
 * Downloads (or copies from a local mirror) into `<dest>.part`, resuming what is there, then
 * returns the full SHA-256 of the part file. Throws (keeping the part file for a resume) when the
 * transfer breaks.
 */
async function transfer(source: string, part: string, report: (received: number, total: number | null, resumedFrom: number, done: boolean) => void, idleTimeoutS: number): Promise<string> {
  if (!/^https?:\/\//.test(source)) {
    const from = source.startsWith('file://') ? fileURLToPath(source) : source;
    if (!existsSync(from)) throw new Error(`the mirror has no ${from}`);
    await copyFile(from, part);
    const size = (await stat(part)).size;
    report(size, size, 0, true);
    return sha256File(part);
  }
  let existing = existsSync(part) ? (await stat(part)).size : 0;
  const headers: Record<string, string> = { 'User-Agent': 'pneumo-native', 'Accept-Encoding': 'identity' };
  if (existing > 0) headers.Range = `bytes=${existing}-`;
  const { res, url } = await request(source, headers, idleTimeoutS);
  const status = res.statusCode ?? 0;
  let total: number | null = null;
  if (status === 206) {
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
    if (!range || Number(range[1]) !== existing) {
      res.resume();
      await rm(part, { force: true });
      return transfer(source, part, report, idleTimeoutS); // an unusable range answer: start over
    }
    total = range[3] === '*' ? null : Number(range[3]);
  } else if (status === 416 && existing > 0) {
    res.resume();
    const m = /\/(\d+)$/.exec(res.headers['content-range'] ?? '');
    if (m && Number(m[1]) === existing) {
      report(existing, existing, existing, true);
      return sha256File(part); // the part file is already whole
    }
    await rm(part, { force: true });
    return transfer(source, part, report, idleTimeoutS);
  } else if (status === 200) {
    existing = 0; // the server sent the whole file
    const length = res.headers['content-length'];
    total = length === undefined ? null : Number(length);
  } else {
    res.resume();
    throw new Error(`HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''} for ${url}`);
  }
  const hash = createHash('sha256');
  if (existing > 0) {
    for await (const chunk of createReadStream(part, { end: existing - 1 })) hash.update(chunk as Buffer);
  }
  const out = createWriteStream(part, { flags: existing > 0 ? 'a' : 'w' });
  const resumedFrom = existing;
  let received = existing;
  report(received, total, resumedFrom, false);
  try {
    await new Promise<void>((resolvePromise, reject) => {
      let finished = false;
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        received += chunk.length;
        if (!out.write(chunk)) {
          res.pause();
          out.once('drain', () => res.resume());
        }
        report(received, total, resumedFrom, false);
      });
      res.on('end', () => {
        finished = true;
        resolvePromise();
      });
      res.on('aborted', () => reject(new Error('the connection was closed by the server')));
      res.on('error', reject);
      res.on('close', () => {
        if (!finished) reject(new Error('the connection was closed before the end of the file'));
      });
    });
  } finally {
    await new Promise<void>((r) => out.end(r));
  }
  const handle = await open(part, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  if (total !== null && received !== total) throw new Error(`the connection ended after ${received} of ${total} bytes`);
  report(received, total ?? received, resumedFrom, true);
  return hash.digest('hex');
}

/**
 * The local path of `encoder`'s `kind` weights: from the cache (verified once, then trusted while
 * its size and time stamp stay the same), else downloaded (from the mirror when set) into it.
 */
export async function fetchPretrained(encoder: string, kind = 'imagenet', options: FetchWeightsOptions = {}): Promise<FetchedWeights> {
  return fetchWeightsFile(pretrainedEntry(encoder, kind), options, encoder, kind);
}

const inFlight = new Map<string, Promise<FetchedWeights>>();

/**
 * `fetchPretrained` for any entry (address, file name, checksum): the cache, the mirror, the
 * download. Concurrent calls for one file share one download (a lock file does so across processes).
 */
export async function fetchWeightsFile(entry: PretrainedEntry, options: FetchWeightsOptions = {}, encoder = entry.file, kind = 'file'): Promise<FetchedWeights> {
  const key = join(options.cacheDir ?? weightsCacheDir(), entry.file);
  const running = inFlight.get(key);
  if (running) return running;
  const promise = fetchOnce(entry, options, encoder, kind).finally(() => inFlight.delete(key));
  inFlight.set(key, promise);
  return promise;
}

async function fetchOnce(entry: PretrainedEntry, options: FetchWeightsOptions, encoder: string, kind: string): Promise<FetchedWeights> {
  const cacheDir = options.cacheDir ?? weightsCacheDir();
  const path = join(cacheDir, entry.file);
  const expected = expectedChecksum(entry);
  const hit = await trustedSidecar(path, entry);
  if (hit) return { encoder, kind, path, sha256: hit.sha256, downloaded: false, url: null };
  await mkdir(cacheDir, { recursive: true });
  const progress = options.onProgress === false ? () => undefined : (options.onProgress ?? stderrProgress());
  const release = await lock(path, (pid) => process.stderr.write(`waiting for process ${pid}, which is fetching ${entry.file} into ${cacheDir}\n`));
  try {
    if (existsSync(path)) {
      // In the cache without a valid sidecar (copied in by hand, or touched): verify it now.
      const again = await trustedSidecar(path, entry);
      if (again) return { encoder, kind, path, sha256: again.sha256, downloaded: false, url: null };
      const sha256 = await sha256File(path);
      if (checksumMatches(sha256, entry)) {
        await writeSidecar(path, sha256, 'cache');
        return { encoder, kind, path, sha256, downloaded: false, url: null };
      }
      process.stderr.write(`${path} does not match its checksum (expected ${expected}, found ${sha256}): fetching it again\n`);
      await rm(path, { force: true });
      await rm(sidecarPath(path), { force: true });
    }
    const source = weightsSource(entry, options.mirror === undefined ? process.env.PNEUMO_WEIGHTS_MIRROR : options.mirror);
    const part = `${path}.part`;
    let sha256: string;
    try {
      sha256 = await transfer(
        source,
        part,
        (received, total, resumedFrom, done) => progress({ encoder, file: entry.file, received, total, resumedFrom, done }),
        options.idleTimeoutS ?? 60,
      );
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const partial = existsSync(part) ? (await stat(part)).size : 0;
      const offline = ['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH'].includes(e.code ?? '');
      throw new Error(
        `Cannot fetch ${entry.file} (${encoder} ${kind} weights) from ${source}: ${e.message}` +
          (partial > 0 ? `; ${partial} bytes are kept in ${part} and the next attempt resumes from there` : '') +
          (offline || /^HTTP 404/.test(e.message) ? `; ${networkHint(entry.file, cacheDir)}` : ''),
        { cause: err },
      );
    }
    if (!checksumMatches(sha256, entry)) {
      await unlink(part).catch(() => undefined);
      throw new ChecksumMismatchError(entry.file, expected, sha256, `downloaded from ${source}; nothing was kept`);
    }
    await rename(part, path);
    await writeSidecar(path, sha256, source);
    return { encoder, kind, path, sha256, downloaded: true, url: source };
  } finally {
    await release();
  }
}

/** One row of `weights list`. */
export interface PretrainedStatus {
  encoder: string;
  kind: string;
  file: string;
  url: string;
  from: string;
  /** "sha256:<hex>" or "sha256-prefix:<hex>". */
  checksum: string;
  path: string;
  cached: boolean;
  /** Size on disk when cached. */
  bytes: number | null;
  /** A partial download waiting to resume. */
  partialBytes: number | null;
}

/** Every registry encoder's pretrained files and whether they are in the cache (no hashing). */
export async function listPretrained(encoders?: string[], cacheDir = weightsCacheDir()): Promise<PretrainedStatus[]> {
  const names = encoders && encoders.length ? encoders : [...registry().encoders.keys()];
  const rows: PretrainedStatus[] = [];
  for (const name of names) {
    for (const [kind, entry] of encoderEntry(name).pretrained) {
      const path = join(cacheDir, entry.file);
      const size = async (p: string): Promise<number | null> => (existsSync(p) ? (await stat(p)).size : null);
      const bytes = await size(path);
      rows.push({
        encoder: name,
        kind,
        file: entry.file,
        url: entry.url,
        from: entry.from,
        checksum: entry.sha256 ? `sha256:${entry.sha256}` : `sha256-prefix:${entry.sha256Prefix}`,
        path,
        cached: bytes !== null,
        bytes,
        partialBytes: await size(`${path}.part`),
      });
    }
  }
  return rows;
}

export interface VerifyResult {
  encoder: string;
  kind: string;
  path: string;
  /** "ok", "mismatch" or "missing". */
  status: 'ok' | 'mismatch' | 'missing';
  sha256: string | null;
  expected: string;
}

/** Re-hashes a cached file in full against the registry (a mismatching file is left for the user to see). */
export async function verifyPretrained(encoder: string, kind = 'imagenet', cacheDir = weightsCacheDir()): Promise<VerifyResult> {
  const entry = pretrainedEntry(encoder, kind);
  const path = join(cacheDir, entry.file);
  const expected = expectedChecksum(entry);
  if (!existsSync(path)) return { encoder, kind, path, status: 'missing', sha256: null, expected };
  const sha256 = await sha256File(path);
  const ok = checksumMatches(sha256, entry);
  if (ok) await writeSidecar(path, sha256, 'verify');
  else await rm(sidecarPath(path), { force: true });
  return { encoder, kind, path, status: ok ? 'ok' : 'mismatch', sha256, expected };
}

/** `imagenet` (or another registry kind) to a verified local file; a path is checked to exist. */
export async function resolveEncoderWeights(encoder: string, weights: string, options: FetchWeightsOptions = {}): Promise<{ path: string; fetched: FetchedWeights | null }> {
  if (!weights.includes('/') && !weights.includes('\\') && !weights.includes('.') && encoderEntry(encoder).pretrained.has(weights)) {
    const fetched = await fetchPretrained(encoder, weights, options);
    return { path: fetched.path, fetched };
  }
  const path = isAbsolute(weights) ? weights : resolve(weights);
  if (!existsSync(path)) {
    const kinds = [...encoderEntry(encoder).pretrained.keys()];
    throw new Error(`encoder weights ${weights} is neither ${kinds.length ? kinds.map((k) => `"${k}"`).join(' nor ') : 'a pretrained name'} nor an existing file`);
  }
  return { path, fetched: null };
}
