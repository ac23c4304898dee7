/**
 * The SIIM-ACR run-length encoding (SPEC section 2).
 *
 * Masks are row-major `Uint8Array`s of `width * height` bytes, 0 outside and 1 inside (any
 * non-zero byte counts as inside when encoding). The text flattens the mask column-major
 * (index = column * height + row) and lists relative `gap length` pairs: `gap` is the number of
 * 0-pixels since the previous run ended (for the first run, its 0-based start index). An empty
 * mask is `-1`.
 *
 * Decisions on edge cases:
 * - The encoder emits a run that reaches the last pixel (the competition's reference encoder
 *   dropped it); the decoder handles both.
 * - Leading, trailing and repeated whitespace (spaces, tabs, CR, LF) are tolerated, so ` -1` and
 *   `" 5 2 "` decode. An empty or all-whitespace text is an empty mask, like `-1`.
 * - A zero-length run and a zero gap between runs are accepted: the reference decoder handles
 *   them unambiguously (nothing is filled, or two runs touch), and rejecting them would reject
 *   files that the competition's own tools read. The encoder never writes either.
 * - Malformed text throws an `RleError` naming the image id (when given) and the reason: an odd
 *   number of values, a value that is not a non-negative decimal integer (negative, fractional,
 *   exponent, other characters), `-1` mixed with other values, a value larger than the mask, or a
 *   run past the last pixel.
 *
 * Internally a mask is also described by its runs: an `Int32Array` of `[start, end)` pairs of
 * absolute column-major indices, sorted and non-overlapping (`Runs`). The metric works on runs
 * directly, without materialising masks.
 */
import { assertInteger, invalidParameterError, is } from '../core/validate.js';

/** A malformed RLE string; `imageId` is set when the caller named the image. */
export class RleError extends Error {
  constructor(
    message: string,
    readonly imageId: string | undefined,
    readonly reason: string,
  ) {
    super(message);
    this.name = 'RleError';
  }
}

/**
 * Runs of a mask in column-major order: `[start0, end0, start1, end1, ...]`, each `[start, end)`,
 * sorted by start, non-overlapping and non-empty.
 */
export type Runs = Int32Array;

/** The text for an empty mask. */
export const EMPTY_RLE = '-1';

const CHAR_0 = 48;
const CHAR_9 = 57;
const CHAR_MINUS = 45;
const EMPTY_RUNS: Runs = new Int32Array(0);

/** Space, tab, CR and LF separate values. */
function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

function checkSize(width: unknown, height: unknown): void {
  assertInteger('width', width, 1, 1 << 15);
  assertInteger('height', height, 1, 1 << 15);
}

function checkMask(mask: unknown, width: number, height: number): asserts mask is Uint8Array {
  if (!(mask instanceof Uint8Array)) throw invalidParameterError('mask', 'a Uint8Array', mask);
  if (mask.length !== width * height) {
    throw invalidParameterError('mask', `a Uint8Array of length ${width * height} (${width} x ${height})`, mask);
  }
}

function fail(id: string | undefined, reason: string): never {
  throw new RleError(`${id === undefined ? 'RLE' : `RLE of image ${id}`}: ${reason}`, id, reason);
}

function describeToken(text: string, start: number, end: number): string {
  const token = text.slice(start, end);
  return JSON.stringify(token.length > 20 ? `${token.slice(0, 17)}...` : token);
}

/** Reused per-column flags for `encodeRuns` (grows as needed, 4-byte aligned). */
let columnFlags = new Uint8Array(0);

/** Marks in `flags[x]` (non-zero) the columns of rows y0..y1 that hold a non-zero byte. */
function markColumns(mask: Uint8Array, width: number, y0: number, y1: number, flags: Uint8Array): void {
  if ((width & 3) === 0 && (mask.byteOffset & 3) === 0) {
    // OR whole rows 4 bytes at a time.
    const wordsPerRow = width >> 2;
    const words = new Int32Array(mask.buffer, mask.byteOffset + y0 * width, (y1 - y0 + 1) * wordsPerRow);
    const acc = new Int32Array(flags.buffer, 0, wordsPerRow);
    for (let r = 0, q = 0; r <= y1 - y0; r++) for (let w = 0; w < wordsPerRow; w++, q++) acc[w] |= words[q] as number;
    return;
  }
  for (let y = y0; y <= y1; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) flags[x] |= mask[row + x] as number;
  }
}

/**
 * Runs of a row-major mask, in column-major order (see `Runs`). Any non-zero byte is inside.
 *
 * Masks are mostly empty, and reading a row-major array column by column is slow, so the scan is
 * narrowed first: a word-wise pass finds the first and last non-empty rows, a row-major pass
 * marks the columns holding anything, and only those columns are walked, over those rows.
 */
export function encodeRuns(mask: Uint8Array, width: number, height: number): Runs {
  checkSize(width, height);
  checkMask(mask, width, height);
  const total = width * height;
  const first = firstNonZero(mask);
  if (first < 0) return EMPTY_RUNS;
  const y0 = Math.floor(first / width);
  const y1 = Math.floor(lastNonZero(mask) / width);
  const flagBytes = (width + 3) & ~3;
  if (columnFlags.length < flagBytes) columnFlags = new Uint8Array(flagBytes);
  const flags = columnFlags;
  flags.fill(0, 0, flagBytes);
  markColumns(mask, width, y0, y1, flags);
  let out: Int32Array = new Int32Array(256);
  let n = 0;
  let inRun = 0;
  for (let x = 0; x < width; x++) {
    const column = x * height;
    // Rows above y0 are empty: a run carried over from the previous column ends at the top.
    if (inRun === 1 && (y0 > 0 || flags[x] === 0)) {
      if (n === out.length) out = grow(out);
      out[n++] = column;
      inRun = 0;
    }
    if (flags[x] === 0) continue;
    for (let y = y0, p = y0 * width + x; y <= y1; y++, p += width) {
      const v = mask[p] !== 0 ? 1 : 0;
      if (v !== inRun) {
        if (n === out.length) out = grow(out);
        out[n++] = column + y;
        inRun = v;
      }
    }
    if (inRun === 1 && y1 < height - 1) {
      if (n === out.length) out = grow(out);
      out[n++] = column + y1 + 1;
      inRun = 0;
    }
  }
  if (inRun === 1) {
    if (n === out.length) out = grow(out);
    out[n++] = total; // the run that reaches the last pixel is closed, not dropped
  }
  return out.subarray(0, n);
}

function grow(runs: Int32Array): Int32Array {
  const grown = new Int32Array(runs.length * 2);
  grown.set(runs);
  return grown;
}

/** Index of the first non-zero byte, or -1; compares 4 bytes at a time where aligned. */
function firstNonZero(mask: Uint8Array): number {
  const len = mask.length;
  const head = Math.min(len, (4 - (mask.byteOffset & 3)) & 3);
  for (let i = 0; i < head; i++) if (mask[i] !== 0) return i;
  const nWords = (len - head) >> 2;
  const words = new Int32Array(mask.buffer, mask.byteOffset + head, nWords);
  for (let w = 0; w < nWords; w++) {
    if (words[w] !== 0) {
      for (let i = head + 4 * w; ; i++) if (mask[i] !== 0) return i;
    }
  }
  for (let i = head + 4 * nWords; i < len; i++) if (mask[i] !== 0) return i;
  return -1;
}

/** Index of the last non-zero byte, or -1. */
function lastNonZero(mask: Uint8Array): number {
  const len = mask.length;
  const head = Math.min(len, (4 - (mask.byteOffset & 3)) & 3);
  const nWords = (len - head) >> 2;
  for (let i = len - 1; i >= head + 4 * nWords; i--) if (mask[i] !== 0) return i;
  const words = new Int32Array(mask.buffer, mask.byteOffset + head, nWords);
  for (let w = nWords - 1; w >= 0; w--) {
    if (words[w] !== 0) {
      for (let i = head + 4 * w + 3; ; i--) if (mask[i] !== 0) return i;
    }
  }
  for (let i = head - 1; i >= 0; i--) if (mask[i] !== 0) return i;
  return -1;
}

/** Formats runs as SIIM RLE text (`-1` when there are none). */
export function formatRuns(runs: Runs): string {
  if (runs.length === 0) return EMPTY_RLE;
  const parts = new Array<number>(runs.length);
  let previousEnd = 0;
  for (let i = 0; i < runs.length; i += 2) {
    const start = runs[i] as number;
    const end = runs[i + 1] as number;
    parts[i] = start - previousEnd;
    parts[i + 1] = end - start;
    previousEnd = end;
  }
  return parts.join(' ');
}

/** Encodes a row-major mask (`width * height` bytes, non-zero = inside) as SIIM RLE text. */
export function encode(mask: Uint8Array, width: number, height: number): string {
  return formatRuns(encodeRuns(mask, width, height));
}

/**
 * Parses SIIM RLE text into absolute runs (see `Runs`), validating it. Zero-length runs are
 * dropped and touching runs merged, so the result is canonical. Throws `RleError` when malformed.
 */
export function decodeRuns(text: string, width: number, height: number, id?: string): Runs {
  checkSize(width, height);
  if (!is.string(text)) throw invalidParameterError(id === undefined ? 'RLE text' : `RLE text of image ${id}`, 'a string', text);
  const total = width * height;
  const len = text.length;
  let out: Int32Array = EMPTY_RUNS;
  let n = 0;
  let count = 0; // values read
  let pos = 0; // column-major position after the previous run
  let runStart = 0;
  let i = 0;
  let sawMinusOne = false;
  while (i < len) {
    let c = text.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    const tokenStart = i;
    if (c === CHAR_MINUS) {
      // Only a lone `-1` is allowed; anything else negative is malformed.
      let j = i + 1;
      while (j < len && !isSpace(text.charCodeAt(j))) j++;
      if (text.slice(i, j) !== '-1') fail(id, `negative or non-numeric value ${describeToken(text, i, j)} at value ${count + 1}`);
      sawMinusOne = true;
      count++;
      i = j;
      continue;
    }
    let value = 0;
    while (i < len) {
      c = text.charCodeAt(i);
      if (c < CHAR_0 || c > CHAR_9) break;
      value = value * 10 + (c - CHAR_0);
      i++;
    }
    if (i < len && !isSpace(c)) {
      let j = i;
      while (j < len && !isSpace(text.charCodeAt(j))) j++;
      fail(id, `non-numeric value ${describeToken(text, tokenStart, j)} at value ${count + 1}`);
    }
    if (value > total) {
      fail(id, `value ${describeToken(text, tokenStart, i)} at value ${count + 1} is larger than the ${width} x ${height} mask (${total} pixels)`);
    }
    if (count % 2 === 0) {
      runStart = pos + value;
      if (runStart > total) fail(id, `run ${count / 2 + 1} starts at ${runStart}, past the last pixel (${total - 1}) of a ${width} x ${height} mask`);
    } else {
      const runEnd = runStart + value;
      if (runEnd > total) {
        fail(id, `run ${(count + 1) / 2} (start ${runStart}, length ${value}) ends past the last pixel (${total - 1}) of a ${width} x ${height} mask`);
      }
      if (value > 0) {
        if (n > 0 && out[n - 1] === runStart) {
          out[n - 1] = runEnd; // touching runs (zero gap) merge
        } else {
          if (n + 2 > out.length) {
            const grown = new Int32Array(Math.max(64, out.length * 2));
            grown.set(out.subarray(0, n));
            out = grown;
          }
          out[n++] = runStart;
          out[n++] = runEnd;
        }
      }
      pos = runEnd;
    }
    count++;
  }
  if (sawMinusOne) {
    if (count === 1) return EMPTY_RUNS;
    fail(id, `"-1" (empty mask) mixed with ${count - 1} other value${count === 2 ? '' : 's'}`);
  }
  if (count % 2 === 1) fail(id, `odd number of values (${count}); expected "gap length" pairs`);
  return out.subarray(0, n);
}

/** Sets every pixel of `runs` to 1 in a row-major mask (other pixels are left as they are). */
export function paintRuns(runs: Runs, mask: Uint8Array, width: number, height: number): Uint8Array {
  checkSize(width, height);
  checkMask(mask, width, height);
  for (let r = 0; r < runs.length; r += 2) {
    const start = runs[r] as number;
    const end = runs[r + 1] as number;
    // Walk the run one column segment at a time.
    let x = Math.floor(start / height);
    let y = start - x * height;
    let remaining = end - start;
    while (remaining > 0) {
      const count = Math.min(remaining, height - y);
      for (let p = y * width + x, k = 0; k < count; k++, p += width) mask[p] = 1;
      remaining -= count;
      x++;
      y = 0;
    }
  }
  return mask;
}

/**
 * Decodes SIIM RLE text into a new row-major mask of 0/1 bytes. `id` names the image in errors.
 * Throws `RleError` when the text is malformed.
 */
export function decode(text: string, width: number, height: number, id?: string): Uint8Array {
  const runs = decodeRuns(text, width, height, id);
  return paintRuns(runs, new Uint8Array(width * height), width, height);
}

/**
 * Decodes several RLE rows of one image (one per region, as in the train labels) into their
 * union. An empty list, or rows that are all `-1`, give an empty mask.
 */
export function decodeUnion(rows: readonly string[], width: number, height: number, id?: string): Uint8Array {
  if (!Array.isArray(rows)) throw invalidParameterError('rows', 'an array of RLE strings', rows);
  const mask = new Uint8Array(width * height);
  for (const row of rows) paintRuns(decodeRuns(row, width, height, id), mask, width, height);
  return mask;
}

/** The union of several run lists, as canonical runs (sorted, merged). */
export function unionRuns(lists: readonly Runs[]): Runs {
  const nonEmpty = lists.filter((runs) => runs.length > 0);
  if (nonEmpty.length === 0) return EMPTY_RUNS;
  if (nonEmpty.length === 1) return nonEmpty[0] as Runs;
  const pairs: [number, number][] = [];
  for (const runs of nonEmpty) for (let i = 0; i < runs.length; i += 2) pairs.push([runs[i] as number, runs[i + 1] as number]);
  pairs.sort((a, b) => a[0] - b[0]);
  const out = new Int32Array(pairs.length * 2);
  let n = 0;
  for (const [start, end] of pairs) {
    if (n > 0 && start <= (out[n - 1] as number)) {
      if (end > (out[n - 1] as number)) out[n - 1] = end;
    } else {
      out[n++] = start;
      out[n++] = end;
    }
  }
  return out.subarray(0, n);
}

/** Decodes several RLE rows of one image into the runs of their union. */
export function decodeUnionRuns(rows: readonly string[], width: number, height: number, id?: string): Runs {
  if (!Array.isArray(rows)) throw invalidParameterError('rows', 'an array of RLE strings', rows);
  return unionRuns(rows.map((row) => decodeRuns(row, width, height, id)));
}

/** The number of pixels covered by runs. */
export function runsArea(runs: Runs): number {
  let area = 0;
  for (let i = 0; i < runs.length; i += 2) area += (runs[i + 1] as number) - (runs[i] as number);
  return area;
}

/** The number of pixels two canonical run lists have in common (a merge of sorted intervals). */
export function intersectionArea(a: Runs, b: Runs): number {
  let i = 0;
  let j = 0;
  let area = 0;
  while (i < a.length && j < b.length) {
    const aEnd = a[i + 1] as number;
    const bEnd = b[j + 1] as number;
    const lo = Math.max(a[i] as number, b[j] as number);
    const hi = Math.min(aEnd, bEnd);
    if (hi > lo) area += hi - lo;
    if (aEnd <= bEnd) i += 2;
    else j += 2;
  }
  return area;
}

/** True when the text is an empty mask (`-1`, ` -1` or blank); does not validate other text. */
export function isEmptyRle(text: string): boolean {
  const t = text.trim();
  return t === EMPTY_RLE || t === '';
}
