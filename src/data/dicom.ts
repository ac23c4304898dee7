/**
 * Reading DICOM chest radiographs (SIIM-ACR and the common encodings around it) into 8-bit
 * grayscale pixels plus the metadata a user wants.
 *
 * Supported pixel data: JPEG Baseline 8-bit (the SIIM encoding; frames split over several
 * fragments are joined), and native data in explicit or implicit VR little endian at 8 and 16
 * bits. MONOCHROME1 is inverted to the MONOCHROME2 convention; 16-bit data goes through Rescale
 * Slope/Intercept and the first VOI window (or the image's min-max) to 8 bits; multi-frame files
 * give frame 0. Anything else is a {@link DicomError} naming the file and the reason.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import sharp, { type OutputInfo } from 'sharp';
import { assertInteger, invalidParameterError, is } from '../core/validate.js';
import { DataSet } from './dicom/dataset.js';
import { DicomError } from './dicom/errors.js';
import { endsWithEoi, readJpegFrameInfo, sofName } from './dicom/jpeg.js';
import { readFileMeta } from './dicom/meta.js';
import { type PixelDataLocation, scanDataSet } from './dicom/scan.js';
import { type GrayTransform, type NativeLayout, nativeFrameBytes, nativeFrameToGray8 } from './dicom/pixels.js';
import {
  describeTransferSyntax,
  IMPLICIT_VR_LITTLE_ENDIAN,
  pixelEncodingOf,
  supportedTransferSyntaxes,
  type TransferSyntax,
} from './dicom/transfer-syntax.js';

export { DicomError } from './dicom/errors.js';
export type { TransferSyntax } from './dicom/transfer-syntax.js';
export { writeDicom } from './dicom-write.js';
export type { DicomImageData, DicomWriteEncoding, DicomWriteOptions, SiimTagOverrides, SiimTags } from './dicom-write.js';

/** The metadata of a DICOM image, read without decoding its pixels. */
export interface DicomHeader {
  /** The image id: the file name without `.dcm` (SIIM's ImageId), else the SOP Instance UID. */
  id: string;
  /** Rows (0028,0010): the stored image height. */
  rows: number;
  /** Columns (0028,0011): the stored image width. */
  columns: number;
  /** [row, column] spacing in mm from PixelSpacing, else ImagerPixelSpacing. */
  pixelSpacing?: [number, number];
  /** ViewPosition (0018,5101), e.g. `PA` or `AP`. */
  viewPosition?: string;
  /** PatientSex (0010,0040), e.g. `M` or `F`. */
  sex?: string;
  /** PatientAge in years, parsed leniently (`58`, `058Y`, `6M` = 0.5). */
  age?: number;
  modality?: string;
  /** BodyPartExamined (0018,0015). */
  bodyPart?: string;
  sopInstanceUid?: string;
  transferSyntax: TransferSyntax;
  /** PhotometricInterpretation as stored (the pixels returned are always MONOCHROME2-like). */
  photometric: string;
  bitsAllocated: number;
  bitsStored: number;
  /** 0 unsigned, 1 signed. */
  pixelRepresentation: number;
  /** NumberOfFrames (1 when absent). */
  frames: number;
  /** Rescale Slope/Intercept when present. */
  rescale?: { slope: number; intercept: number };
  /** The first VOI window when present. */
  window?: { center: number; width: number };
}

/** A decoded DICOM image: 8-bit grayscale pixels (0 = black) and its metadata. */
export interface DicomImage extends DicomHeader {
  /** Row-major 8-bit pixels of frame 0, `width * height` bytes. */
  pixels: Uint8Array;
  /** Width of `pixels` (the `size` option, else Columns). */
  width: number;
  /** Height of `pixels` (the `size` option, else Rows). */
  height: number;
}

/** Options of {@link read}. */
export interface ReadOptions {
  /**
   * Resize to `size` x `size` (bilinear, libvips' antialiased linear kernel). JPEG frames are
   * decoded with shrink-on-load (DCT scaling) where sharp applies it: when the reduction factor
   * is above 2, e.g. 1024 -> 256 (at exactly 2x sharp decodes in full to avoid libjpeg rounding
   * errors). Without `size` the pixels keep the stored size.
   */
  size?: number;
  /** The id to report instead of the file name / SOP Instance UID. */
  id?: string;
  /**
   * Decode damaged JPEG data (truncated, corrupt: what libjpeg only warns about), with what
   * cannot be decoded left grey. Default false: a DicomError ("the JPEG data of frame 0 is
   * truncated or corrupt").
   */
  acceptDamagedJpeg?: boolean;
}

const BUFFER_NAME = '<buffer>';
/** Data sets the structural walk cannot read: big endian, and deflated (compressed) ones. */
const NOT_WALKABLE = new Set(['1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99']);

/** The SIIM image id of a path: its file name without the `.dcm` extension. */
export function idFromPath(path: string): string {
  return basename(path).replace(/\.dcm$/i, '');
}

async function load(source: string | Uint8Array): Promise<{ bytes: Uint8Array; file: string }> {
  if (typeof source === 'string') {
    try {
      return { bytes: await readFile(source), file: source };
    } catch (err) {
      throw new DicomError(source, `cannot read the file: ${(err as Error).message}`);
    }
  }
  if (source instanceof Uint8Array) return { bytes: source, file: BUFFER_NAME };
  throw invalidParameterError('source', 'a file path or a Uint8Array/Buffer', source);
}

function validateSize(options: ReadOptions | undefined): number | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== 'object' || options === null) throw invalidParameterError('options', 'an object', options);
  if (options.size !== undefined) assertInteger('options.size', options.size, 1, 65535);
  if (options.id !== undefined && !is.string(options.id)) throw invalidParameterError('options.id', 'a string', options.id);
  return options.size;
}

/** Parses age strings: `058Y`, `58` (SIIM, no unit), `6M`, `3W`, `10D`; undefined if unparseable. */
export function parseAge(text: string | undefined): number | undefined {
  const match = /^\s*(\d{1,3})\s*([DWMY])?\s*$/i.exec(text ?? '');
  if (!match) return undefined;
  const n = Number(match[1]);
  const unit = (match[2] ?? 'Y').toUpperCase();
  return unit === 'Y' ? n : unit === 'M' ? n / 12 : unit === 'W' ? n / 52 : n / 365;
}

function spacing(values: number[]): [number, number] | undefined {
  if (values.length === 0 || values.some((v) => !(v > 0))) return undefined;
  return [values[0]!, values[1] ?? values[0]!];
}

/** Builds the header from a parsed data set; throws the reason when Rows/Columns are missing. */
function headerOf(data: DataSet, transferSyntaxUid: string, id: string | undefined): DicomHeader {
  const rows = data.number('00280010');
  const columns = data.number('00280011');
  if (rows === undefined || !(rows > 0)) throw new Error('missing or invalid Rows (0028,0010)');
  if (columns === undefined || !(columns > 0)) throw new Error('missing or invalid Columns (0028,0011)');
  const bitsAllocated = data.number('00280100') ?? 8;
  const frames = data.number('00280008');
  const slope = data.number('00281053');
  const intercept = data.number('00281052');
  const center = data.number('00281050');
  const width = data.number('00281051');
  const sopInstanceUid = data.string('00080018');
  const header: DicomHeader = {
    id: id ?? sopInstanceUid ?? '',
    rows,
    columns,
    pixelSpacing: spacing(data.numbers('00280030')) ?? spacing(data.numbers('00181164')),
    viewPosition: data.string('00185101'),
    sex: data.string('00100040'),
    age: parseAge(data.string('00101010')),
    modality: data.string('00080060'),
    bodyPart: data.string('00180015'),
    sopInstanceUid,
    transferSyntax: describeTransferSyntax(transferSyntaxUid),
    photometric: data.string('00280004') ?? 'MONOCHROME2',
    bitsAllocated,
    bitsStored: data.number('00280101') ?? bitsAllocated,
    pixelRepresentation: data.number('00280103') ?? 0,
    frames: frames !== undefined && frames >= 1 ? Math.floor(frames) : 1,
  };
  if (slope !== undefined || intercept !== undefined) header.rescale = { slope: slope ?? 1, intercept: intercept ?? 0 };
  if (center !== undefined && width !== undefined && width >= 1) header.window = { center, width };
  for (const key of Object.keys(header) as (keyof DicomHeader)[]) if (header[key] === undefined) delete header[key];
  return header;
}

interface Parsed {
  data: DataSet;
  transferSyntaxUid: string;
  /** Located by the structural walk; undefined for data sets it cannot walk (big endian, deflated). */
  pixelData?: PixelDataLocation;
}

/**
 * Checks the envelope and the transfer syntax, walks the data set (lengths, Pixel Data) and
 * parses the elements before Pixel Data with dcmjs.
 */
function parse(bytes: Uint8Array, headerOnly: boolean): Parsed {
  const { transferSyntaxUid, dataSetOffset } = readFileMeta(bytes);
  if (!headerOnly && pixelEncodingOf(transferSyntaxUid) === undefined) throw unsupportedSyntax(transferSyntaxUid);
  // Every other syntax (all encapsulated ones included) has an explicit VR little endian data set.
  const walkable = !NOT_WALKABLE.has(transferSyntaxUid);
  const pixelData = walkable ? scanDataSet(bytes, dataSetOffset, transferSyntaxUid !== IMPLICIT_VR_LITTLE_ENDIAN) : undefined;
  let data: DataSet;
  try {
    data = walkable ? DataSet.parse(bytes.subarray(0, pixelData?.elementOffset ?? bytes.length), false) : DataSet.parse(bytes, true);
  } catch (err) {
    throw new Error(`the data set is malformed (${(err as Error).message})`);
  }
  return pixelData ? { data, transferSyntaxUid, pixelData } : { data, transferSyntaxUid };
}

function unsupportedSyntax(uid: string): Error {
  const { name } = describeTransferSyntax(uid);
  const supported = supportedTransferSyntaxes()
    .map((s) => s.name)
    .join(', ');
  return new Error(`unsupported transfer syntax ${name} (${uid}); supported: ${supported}`);
}

/**
 * The bytes of frame 0 of encapsulated pixel data: all fragments for a single-frame image; for a
 * multi-frame image the fragments from the Basic Offset Table's first entry up to its second,
 * else (empty table) one fragment per frame when the counts match, else the fragments up to the
 * first one ending with a JPEG EOI marker.
 */
function jpegFrame0(bytes: Uint8Array, location: Extract<PixelDataLocation, { encapsulated: true }>, frames: number): Uint8Array {
  const { fragments, offsetTable } = location;
  if (fragments.length === 0) throw new Error('the encapsulated Pixel Data (7FE0,0010) holds no fragments');
  let first = 0;
  let end = fragments.length;
  if (frames > 1 && offsetTable.length > 0) {
    first = fragments.findIndex((f) => f.itemOffset === offsetTable[0]);
    if (first < 0) throw new Error(`the Basic Offset Table's first entry (${offsetTable[0]}) does not point at a fragment`);
    if (offsetTable.length > 1) {
      end = fragments.findIndex((f) => f.itemOffset === offsetTable[1]);
      if (end <= first) throw new Error(`the Basic Offset Table's second entry (${offsetTable[1]}) does not point at a fragment after frame 0`);
    }
  } else if (frames > 1) {
    end = fragments.length === frames ? 1 : fragments.findIndex((f) => endsWithEoi(bytes.subarray(f.offset, f.offset + f.length))) + 1;
    if (end === 0) throw new Error('cannot find the end of frame 0: no fragment ends with a JPEG EOI marker');
  }
  const parts = fragments.slice(first, end).map((f) => bytes.subarray(f.offset, f.offset + f.length));
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** Frame 0 of JPEG Baseline pixel data, checked against the header (8-bit DCT, matching size). */
function checkedJpegFrame(bytes: Uint8Array, location: PixelDataLocation, header: DicomHeader): Uint8Array {
  if (!location.encapsulated) throw new Error('the transfer syntax is JPEG Baseline but the Pixel Data is not encapsulated (it has a defined length)');
  const frame = jpegFrame0(bytes, location, header.frames);
  let info;
  try {
    info = readJpegFrameInfo(frame);
  } catch (err) {
    throw new Error(`frame 0 is not a valid JPEG stream: ${(err as Error).message}`);
  }
  if (info.precision !== 8 || (info.sof !== 0xc0 && info.sof !== 0xc1 && info.sof !== 0xc2)) {
    throw new Error(`frame 0 is a ${info.precision}-bit ${sofName(info.sof)} JPEG; only 8-bit DCT JPEG (Baseline) is supported`);
  }
  if (info.width !== header.columns || info.height !== header.rows) {
    throw new Error(`the JPEG frame is ${info.width}x${info.height} but Columns x Rows say ${header.columns}x${header.rows}`);
  }
  return frame;
}

/**
 * What a native batch decoder needs from a DICOM: the JPEG stream of frame 0 when the image is
 * SIIM-like (JPEG Baseline, MONOCHROME2), else the decoded 8-bit pixels at the stored size.
 * @throws DicomError naming `file` and the reason
 */
export async function pixelSource(
  bytes: Uint8Array,
  file: string,
  options: { acceptDamagedJpeg?: boolean } = {},
): Promise<{ kind: 'jpeg'; frame: Uint8Array; width: number; height: number } | { kind: 'raw'; pixels: Uint8Array; width: number; height: number }> {
  try {
    const { data, transferSyntaxUid, pixelData } = parse(bytes, false);
    const header = headerOf(data, transferSyntaxUid, file === BUFFER_NAME ? undefined : idFromPath(file));
    if (!pixelData) throw new Error('the file has no Pixel Data (7FE0,0010)');
    if (pixelEncodingOf(transferSyntaxUid) === 'jpeg-baseline' && header.photometric !== 'MONOCHROME1') {
      return { kind: 'jpeg', frame: checkedJpegFrame(bytes, pixelData, header), width: header.columns, height: header.rows };
    }
  } catch (err) {
    if (err instanceof DicomError) throw err;
    throw new DicomError(file, (err as Error).message);
  }
  const image = await decodeDicom(bytes, file, { acceptDamagedJpeg: options.acceptDamagedJpeg === true });
  return { kind: 'raw', pixels: image.pixels, width: image.width, height: image.height };
}

async function decodeJpeg(
  bytes: Uint8Array,
  location: PixelDataLocation,
  header: DicomHeader,
  size: number | undefined,
  acceptDamaged = false,
): Promise<{ pixels: Uint8Array; width: number; height: number }> {
  const frame = checkedJpegFrame(bytes, location, header);
  const info = readJpegFrameInfo(frame);
  let pipeline = sharp(frame, { failOn: acceptDamaged ? 'none' : 'warning', sequentialRead: true });
  if (size !== undefined && (size !== info.width || size !== info.height)) {
    pipeline = pipeline.resize(size, size, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: true });
  }
  let result: { data: Buffer; info: OutputInfo };
  try {
    result = await pipeline.toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new Error(`the JPEG data of frame 0 is truncated or corrupt (${(err as Error).message})`);
  }
  const pixels = new Uint8Array(result.data.buffer, result.data.byteOffset, result.data.byteLength);
  if (header.photometric === 'MONOCHROME1') for (let i = 0; i < pixels.length; i += 1) pixels[i] = 255 - pixels[i]!;
  return { pixels, width: result.info.width, height: result.info.height };
}

function decodeNative(bytes: Uint8Array, location: PixelDataLocation, header: DicomHeader, data: DataSet): Uint8Array {
  if (location.encapsulated) throw new Error('the Pixel Data is encapsulated (undefined length) but the transfer syntax is native');
  if (!data.has('00280100')) throw new Error('missing BitsAllocated (0028,0100)');
  const samples = data.number('00280002') ?? 1;
  if (samples !== 1) throw new Error(`SamplesPerPixel is ${samples}; only grayscale (1 sample per pixel) is supported`);
  if (header.bitsAllocated !== 8 && header.bitsAllocated !== 16) {
    throw new Error(`BitsAllocated is ${header.bitsAllocated}; only 8 and 16 bits are supported`);
  }
  if (!(header.bitsStored >= 1 && header.bitsStored <= header.bitsAllocated)) {
    throw new Error(`BitsStored is ${header.bitsStored}, outside 1..BitsAllocated (${header.bitsAllocated})`);
  }
  const layout: NativeLayout = { ...header };
  const value = bytes.subarray(location.value.offset, location.value.offset + location.value.length);
  const needed = nativeFrameBytes(layout) * header.frames;
  if (value.length < needed) {
    throw new Error(
      `the Pixel Data holds ${value.length} bytes but ${header.rows} rows x ${header.columns} columns x ${header.bitsAllocated / 8} byte(s)` +
        `${header.frames > 1 ? ` x ${header.frames} frames` : ''} need ${needed} (truncated or wrong length)`,
    );
  }
  if (location.declaredLength > location.value.length) {
    throw new Error(`the Pixel Data element declares ${location.declaredLength} bytes but only ${location.value.length} remain in the file (truncated or corrupt length)`);
  }
  const transform: GrayTransform = {
    slope: header.rescale?.slope ?? 1,
    intercept: header.rescale?.intercept ?? 0,
    invert: header.photometric === 'MONOCHROME1',
  };
  if (header.window) transform.window = header.window;
  return nativeFrameToGray8(value.subarray(0, nativeFrameBytes(layout)), layout, transform);
}

async function resizeGray(pixels: Uint8Array, width: number, height: number, size: number): Promise<Uint8Array> {
  if (width === size && height === size) return pixels;
  const out = await sharp(pixels, { raw: { width, height, channels: 1 } })
    .resize(size, size, { fit: 'fill', kernel: 'linear' })
    .toColourspace('b-w') // else sharp outputs 3 sRGB channels
    .raw()
    .toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Decodes a DICOM file already in memory; `file` names it in errors.
 * @throws DicomError naming `file` and the reason
 */
export async function decodeDicom(bytes: Uint8Array, file: string, options: ReadOptions = {}): Promise<DicomImage> {
  const size = validateSize(options);
  try {
    const { data, transferSyntaxUid, pixelData } = parse(bytes, false);
    const header = headerOf(data, transferSyntaxUid, options.id ?? (file === BUFFER_NAME ? undefined : idFromPath(file)));
    if (!pixelData) throw new Error('the file has no Pixel Data (7FE0,0010)');
    if (pixelEncodingOf(transferSyntaxUid) === 'jpeg-baseline') {
      return { ...header, ...(await decodeJpeg(bytes, pixelData, header, size, options.acceptDamagedJpeg === true)) };
    }
    const pixels = decodeNative(bytes, pixelData, header, data);
    if (size === undefined) return { ...header, pixels, width: header.columns, height: header.rows };
    return { ...header, pixels: await resizeGray(pixels, header.columns, header.rows, size), width: size, height: size };
  } catch (err) {
    if (err instanceof DicomError) throw err;
    throw new DicomError(file, (err as Error).message);
  }
}

/**
 * Reads a DICOM image: frame 0 as 8-bit grayscale (MONOCHROME2 convention) plus its metadata.
 *
 * @param source a file path (the id is then the file name without `.dcm`) or the file's bytes
 *   (the id is then the SOP Instance UID)
 * @param options `size` to resize to size x size (bilinear, JPEG shrink-on-load when smaller)
 * @throws DicomError naming the file (or "<buffer>") and the reason: unsupported transfer
 *   syntax (by name and UID), truncated or wrong-length pixel data, empty file, missing
 *   preamble/file meta, missing Rows/Columns, corrupt JPEG
 */
export async function read(source: string | Uint8Array, options?: ReadOptions): Promise<DicomImage> {
  validateSize(options);
  const { bytes, file } = await load(source);
  return decodeDicom(bytes, file, options);
}

/**
 * Reads a DICOM file's metadata without decoding its pixels. Works for any transfer syntax
 * whose data set can be parsed (also those whose pixels {@link read} cannot decode).
 * @throws DicomError naming the file and the reason
 */
export async function readHeader(source: string | Uint8Array): Promise<DicomHeader> {
  const { bytes, file } = await load(source);
  try {
    const { data, transferSyntaxUid } = parse(bytes, true);
    return headerOf(data, transferSyntaxUid, file === BUFFER_NAME ? undefined : idFromPath(file));
  } catch (err) {
    throw new DicomError(file, (err as Error).message);
  }
}

/** Lists every `.dcm` file under `dir` (recursively), sorted by path. */
export async function listDicomFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (current: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch (err) {
      throw new Error(`cannot list the DICOM directory ${current}: ${(err as Error).message}`);
    }
    for (const entry of entries) {
      const path = join(current, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await stat(path).catch(() => undefined);
        isDir = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? false;
      }
      if (isDir) await walk(path);
      else if (isFile && /\.dcm$/i.test(entry.name)) out.push(path);
    }
  };
  await walk(dir);
  return out.sort();
}

/**
 * Finds the DICOMs of a SIIM-style tree (`dicom-images-train/<study>/<series>/<ImageId>.dcm`,
 * any depth) and maps each image id (file name without `.dcm`) to its path.
 * @throws Error when the directory cannot be read or two files share an id (naming both paths)
 */
export async function findDicoms(dir: string): Promise<Map<string, string>> {
  if (!is.string(dir) || dir === '') throw invalidParameterError('dir', 'a directory path', dir);
  const map = new Map<string, string>();
  for (const path of await listDicomFiles(dir)) {
    const id = idFromPath(path);
    const previous = map.get(id);
    if (previous !== undefined) throw new Error(`duplicate image id "${id}" under ${dir}: ${previous} and ${path}`);
    map.set(id, path);
  }
  return map;
}
