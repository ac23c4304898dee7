/**
 * SIIM label files (SPEC section 1): train labels and submissions, read and written as streams so
 * that 10,000+ rows cost little memory.
 *
 * - Stage-1 train labels `train-rle.csv`: header `ImageId, EncodedPixels` (leading space).
 * - Stage-2 train labels `stage_2_train.csv`, sample submissions and submissions:
 *   header `ImageId,EncodedPixels`.
 * - One row per pneumothorax region (an image with several regions has several rows, to be
 *   unioned); `-1` (sometimes ` -1`) for an image without pneumothorax.
 *
 * Column names are matched after trimming spaces and quotes, case-insensitively, in any order;
 * other columns are ignored. Values are trimmed. Blank lines are skipped. A UTF-8 byte-order mark
 * and CRLF line ends are tolerated. The RLE text itself is kept as written (trimmed); it is
 * validated where it is decoded (see `rle.ts`), or here with the `size` option.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { AtomicFile } from '../core/atomic-write.js';
import { assertInteger, invalidParameterError, is } from '../core/validate.js';
import { EMPTY_RLE, RleError, decodeRuns, isEmptyRle } from './rle.js';

/** One data row of a label file or submission. `line` is 1-based (the header is line 1). */
export interface LabelRow {
  /** The ImageId (DICOM SOP Instance UID), trimmed. */
  id: string;
  /** The EncodedPixels text, trimmed: `-1` for no pneumothorax. `''` when the file has no such column. */
  rle: string;
  /** The 1-based line number in the file. */
  line: number;
}

/** A label file that cannot be read: names the file and, where it applies, the line. */
export class LabelFileError extends Error {
  constructor(
    message: string,
    readonly file: string,
    readonly line?: number,
  ) {
    super(line === undefined ? `${file}: ${message}` : `${file}:${line}: ${message}`);
    this.name = 'LabelFileError';
  }
}

/** Options for reading rows. */
export interface ReadRowsOptions {
  /** Require the EncodedPixels column (default true). Sample submissions may be read without. */
  requireRle?: boolean;
}

/** The header of a stage-1 train label file (note the space). */
export const STAGE1_HEADER = 'ImageId, EncodedPixels';
/** The header of stage-2 label files and of submissions. */
export const SUBMISSION_HEADER = 'ImageId,EncodedPixels';

function cleanField(field: string): string {
  let f = field.trim();
  if (f.length >= 2 && f.startsWith('"') && f.endsWith('"')) f = f.slice(1, -1).replace(/""/g, '"').trim();
  return f;
}

async function checkReadable(path: string): Promise<void> {
  if (!is.string(path) || path.length === 0) throw invalidParameterError('path', 'a file path', path);
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new LabelFileError(code === 'ENOENT' ? 'no such file' : `cannot read the file (${code ?? String(err)})`, path);
  }
  if (!info.isFile()) throw new LabelFileError('not a file', path);
}

/**
 * Streams the data rows of a label file or submission, in file order. Throws `LabelFileError`
 * (file and line) for a missing or bad header, a row with too few columns or an empty id.
 */
export async function* iterateRows(path: string, options: ReadRowsOptions = {}): AsyncGenerator<LabelRow> {
  await checkReadable(path);
  const requireRle = options.requireRle ?? true;
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let lineNumber = 0;
  let idColumn = -1;
  let rleColumn = -1;
  let columns = 0;
  try {
    for await (const raw of lines) {
      lineNumber++;
      const text = lineNumber === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (idColumn < 0) {
        if (text.trim() === '') throw new LabelFileError('empty header line; expected "ImageId,EncodedPixels"', path, lineNumber);
        const names = text.split(',').map((f) => cleanField(f).toLowerCase());
        idColumn = names.indexOf('imageid');
        rleColumn = names.indexOf('encodedpixels');
        columns = names.length;
        const missing = [idColumn < 0 ? 'ImageId' : '', requireRle && rleColumn < 0 ? 'EncodedPixels' : ''].filter(Boolean);
        if (missing.length > 0) {
          throw new LabelFileError(
            `bad header ${JSON.stringify(text.length > 80 ? `${text.slice(0, 77)}...` : text)}: missing column ${missing.join(' and ')} (expected "${STAGE1_HEADER}" or "${SUBMISSION_HEADER}")`,
            path,
            lineNumber,
          );
        }
        continue;
      }
      if (text.trim() === '') continue;
      const fields = text.split(',');
      if (fields.length < columns) {
        throw new LabelFileError(`expected ${columns} columns but found ${fields.length}: ${JSON.stringify(text.slice(0, 80))}`, path, lineNumber);
      }
      const id = cleanField(fields[idColumn] as string);
      if (id === '') throw new LabelFileError('empty ImageId', path, lineNumber);
      const rle = rleColumn >= 0 ? cleanField(fields[rleColumn] as string) : '';
      yield { id, rle, line: lineNumber };
    }
  } finally {
    lines.close();
  }
  if (idColumn < 0) throw new LabelFileError('empty file; expected a header "ImageId,EncodedPixels"', path);
}

/** Options for `readTrainLabels`. */
export interface ReadTrainLabelsOptions {
  /** Validate every RLE against a `size x size` mask while reading; errors name the file and line. */
  size?: number;
  /**
   * What an id on several rows means: `'union'` (default: train labels list one row per region,
   * unioned by readers) or `'error'` (a submission has one row per image: a repeated id is a
   * LabelFileError naming the file, the line and the first line of that id).
   */
  repeatedIds?: 'union' | 'error';
}

/**
 * Reads a train label file (stage 1 or stage 2) into `id -> RLE rows` in file order. An image
 * whose rows are `-1` maps to an empty list; an image with several regions maps to several rows.
 */
export async function readTrainLabels(path: string, options: ReadTrainLabelsOptions = {}): Promise<Map<string, string[]>> {
  const size = options.size;
  if (size !== undefined) assertInteger('size', size, 1, 1 << 15);
  const repeated = options.repeatedIds ?? 'union';
  if (repeated !== 'union' && repeated !== 'error') throw invalidParameterError('repeatedIds', '"union" or "error"', repeated);
  const labels = new Map<string, string[]>();
  const firstLine = repeated === 'error' ? new Map<string, number>() : null;
  for await (const row of iterateRows(path)) {
    if (firstLine) {
      const first = firstLine.get(row.id);
      if (first !== undefined) throw new LabelFileError(`ImageId ${row.id} repeated (first on line ${first}); a submission has one row per image`, path, row.line);
      firstLine.set(row.id, row.line);
    }
    let list = labels.get(row.id);
    if (!list) labels.set(row.id, (list = []));
    if (isEmptyRle(row.rle)) continue;
    if (size !== undefined) {
      try {
        decodeRuns(row.rle, size, size, row.id);
      } catch (err) {
        if (err instanceof RleError) throw new LabelFileError(err.message, path, row.line);
        throw err;
      }
    }
    list.push(row.rle);
  }
  return labels;
}

/** Reads the ImageIds of a sample submission, in file order. A repeated id is an error. */
export async function readSampleSubmission(path: string): Promise<string[]> {
  const ids: string[] = [];
  const seen = new Map<string, number>();
  for await (const row of iterateRows(path, { requireRle: false })) {
    const first = seen.get(row.id);
    if (first !== undefined) throw new LabelFileError(`ImageId ${row.id} repeated (first on line ${first})`, path, row.line);
    seen.set(row.id, row.line);
    ids.push(row.id);
  }
  return ids;
}

/** True when an image's label rows hold at least one region (the `exist_labels` flag). */
export function hasPneumothorax(rows: readonly string[]): boolean {
  return rows.some((rle) => !isEmptyRle(rle));
}

/** One row of a submission. `rle` is SIIM RLE text; `''` or `-1` for no pneumothorax. */
export interface SubmissionRow {
  id: string;
  rle: string;
}

const RLE_TEXT = /^[0-9 ]*$|^ *-1 *$/;
const FLUSH_BYTES = 1 << 20;

/** How a label file or submission is laid out when written. */
export interface LabelFileFormat {
  /** The header line. */
  header: string;
  /** Between the id and the RLE: `,` or, in the stage-1 train file, `, `. */
  separator: string;
  /** Whether an id may appear on several rows (one per region, as in train labels). */
  repeatedIds: boolean;
}

/** Submissions and sample submissions: `ImageId,EncodedPixels`, one row per image. */
export const SUBMISSION_FORMAT: LabelFileFormat = { header: SUBMISSION_HEADER, separator: ',', repeatedIds: false };
/** Stage-1 train labels (`train-rle.csv`): `ImageId, EncodedPixels`, `id, rle`, one row per region. */
export const STAGE1_TRAIN_FORMAT: LabelFileFormat = { header: STAGE1_HEADER, separator: ', ', repeatedIds: true };
/** Stage-2 train labels (`stage_2_train.csv`): `ImageId,EncodedPixels`, one row per region. */
export const STAGE2_TRAIN_FORMAT: LabelFileFormat = { header: SUBMISSION_HEADER, separator: ',', repeatedIds: true };

/**
 * Writes a submission or label file atomically (`core/atomic-write`): rows go to a temporary file
 * next to the target, every write checked for completeness, which `close()` flushes to disk and
 * renames onto it; `abort()` removes it. A full disk or read-only folder is a `FileWriteError`
 * naming the file, and the target is left as it was. The format (default `SUBMISSION_FORMAT`)
 * says the header, the separator and whether ids may repeat.
 */
export class SubmissionWriter {
  private chunks: string[] = [];
  private pendingBytes = 0;
  private readonly ids = new Set<string>();
  private closed = false;
  private rowCount = 0;

  private constructor(
    /** The final path. */
    readonly path: string,
    private readonly file: AtomicFile,
    private readonly format: LabelFileFormat,
  ) {}

  /** Opens a writer for `path` (the directory must exist) and writes the header. */
  static async open(path: string, format: LabelFileFormat = SUBMISSION_FORMAT): Promise<SubmissionWriter> {
    if (!is.string(path) || path.length === 0) throw invalidParameterError('path', 'a file path', path);
    const writer = new SubmissionWriter(path, await AtomicFile.open(path), format);
    writer.push(`${format.header}\n`);
    return writer;
  }

  /** The number of rows written so far. */
  get rows(): number {
    return this.rowCount;
  }

  /** Adds one row. Throws on an empty id, a repeated id (unless the format allows it) or text that is not RLE. */
  async write(id: string, rle: string): Promise<void> {
    if (this.closed) throw new Error(`SubmissionWriter for ${this.path} is closed`);
    if (!is.string(id) || id.trim() === '' || /[,\n\r"]/.test(id)) throw invalidParameterError('ImageId', 'a non-empty id without commas, quotes or line breaks', id);
    if (!is.string(rle) || !RLE_TEXT.test(rle)) throw invalidParameterError(`EncodedPixels of ${id}`, 'RLE text ("gap length ..." or -1)', rle);
    const cleanId = id.trim();
    if (!this.format.repeatedIds) {
      if (this.ids.has(cleanId)) throw new LabelFileError(`ImageId ${cleanId} written twice`, this.path);
      this.ids.add(cleanId);
    }
    const text = rle.trim() === '' ? EMPTY_RLE : rle.trim();
    this.push(`${cleanId}${this.format.separator}${text}\n`);
    this.rowCount++;
    if (this.pendingBytes >= FLUSH_BYTES) await this.flush();
  }

  /**
   * Writes what is buffered, checks that every byte reached the file, flushes it to disk and
   * renames it onto the target. On failure the temporary file is removed and the target is left
   * as it was.
   * @throws FileWriteError naming the target (full disk, read-only folder, ...)
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
    await this.file.commit();
  }

  /** Discards the temporary file; the target is left as it was. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.file.abort();
  }

  private push(text: string): void {
    this.chunks.push(text);
    this.pendingBytes += text.length;
  }

  private async flush(): Promise<void> {
    if (this.chunks.length === 0) return;
    const text = this.chunks.join('');
    this.chunks = [];
    this.pendingBytes = 0;
    try {
      await this.file.write(text);
    } catch (err) {
      this.closed = true;
      throw err;
    }
  }
}

/**
 * Writes rows (sync or async iterable) as a submission file, atomically; returns the row count.
 * Pass `STAGE1_TRAIN_FORMAT` or `STAGE2_TRAIN_FORMAT` to write train labels (repeated ids allowed).
 */
export async function writeSubmission(
  path: string,
  rows: Iterable<SubmissionRow> | AsyncIterable<SubmissionRow>,
  format: LabelFileFormat = SUBMISSION_FORMAT,
): Promise<number> {
  const writer = await SubmissionWriter.open(path, format);
  try {
    for await (const row of rows) await writer.write(row.id, row.rle);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  await writer.close();
  return writer.rows;
}
