/**
 * A DICOM writer for the project's synthetic SIIM-like dataset and for tests: Part 10 files
 * (128-byte preamble, "DICM", file meta group 0002 in explicit VR little endian with its group
 * length, then the dataset) with JPEG Baseline, explicit VR or implicit VR little endian pixel
 * data. The bytes are written here rather than through dcmjs so that every field is exactly
 * what the SIIM files hold (8-bit JPEG Baseline, one fragment per frame unless asked).
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { assertInteger, assertNumber, assertOneOf, invalidParameterError, is } from '../core/validate.js';
import { type DataElement, encodeElement, encodeEncapsulatedPixelData } from './dicom/elements.js';
import { readJpegFrameInfo, sofName } from './dicom/jpeg.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE } from './dicom/transfer-syntax.js';

/** The descriptive tags of a SIIM-ACR chest radiograph, as the writer fills them. */
export interface SiimTags {
  specificCharacterSet: string;
  /** Secondary Capture Image Storage in SIIM. */
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  studyDate: string;
  studyTime: string;
  accessionNumber: string;
  /** `CR` in SIIM. */
  modality: string;
  /** `WSD` (workstation) in SIIM. */
  conversionType: string;
  referringPhysicianName: string;
  seriesDescription: string;
  patientName: string;
  patientId: string;
  patientBirthDate: string;
  /** `M` or `F`. */
  patientSex: string;
  /** Age string; SIIM writes a bare number such as `58` with no `Y` unit. */
  patientAge: string;
  /** `CHEST` in SIIM. */
  bodyPartExamined: string;
  /** `PA` or `AP`. */
  viewPosition: string;
  studyId: string;
  seriesNumber: number;
  instanceNumber: number;
  patientOrientation: string;
  /** (0028,0030) row and column spacing in mm. */
  pixelSpacing: [number, number];
  /** (0018,1164) detector spacing in mm; not written unless given. */
  imagerPixelSpacing?: [number, number];
}

/** Tag values to override; `null` leaves the tag out of the file. */
export type SiimTagOverrides = { [K in keyof SiimTags]?: SiimTags[K] | null };

/** An image to write: one or more frames, row-major, frame after frame. */
export interface DicomImageData {
  /** 8-bit (Uint8Array), unsigned 16-bit (Uint16Array) or signed 16-bit (Int16Array) samples. */
  pixels: Uint8Array | Uint16Array | Int16Array;
  width: number;
  height: number;
  /** Bits Stored (0028,0101): 8 for 8-bit data, 1-16 for 16-bit data (default: 8 or 16). */
  bitsStored?: number;
}

/** Pixel data encodings the writer produces. */
export type DicomWriteEncoding = 'jpeg-baseline' | 'explicit-le' | 'implicit-le';

/** Options of {@link writeDicom}. */
export interface DicomWriteOptions {
  encoding: DicomWriteEncoding;
  /** JPEG quality 1-100 (default 90). */
  quality?: number;
  /** Default MONOCHROME2; MONOCHROME1 marks the stored values as inverted (0 = white). */
  photometric?: 'MONOCHROME2' | 'MONOCHROME1';
  /** Number of frames in `pixels` (default: pixels.length / (width * height)). */
  frames?: number;
  /** Split each JPEG frame over this many fragments (default 1). */
  fragments?: number;
  /** Write a Basic Offset Table for encapsulated data (default true; false leaves it empty). */
  offsetTable?: boolean;
  /** Rescale Slope / Intercept tags (0028,1053) / (0028,1052). */
  rescale?: { slope: number; intercept: number };
  /** VOI window tags (0028,1050) / (0028,1051); arrays write multi-valued tags. */
  window?: { center: number | number[]; width: number | number[] };
  /** Overrides of the SIIM-like default tags. */
  tags?: SiimTagOverrides;
}

const ENCODINGS: readonly DicomWriteEncoding[] = ['jpeg-baseline', 'explicit-le', 'implicit-le'];
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
/** A UUID-derived UID (2.25 root) naming this writer as the implementation. */
const IMPLEMENTATION_CLASS_UID = '2.25.201993178046437624598613403262377925413';

/** A deterministic 2.25 UID from a hash of the pixels and a label, so equal inputs give equal files. */
function derivedUid(digest: Buffer, label: string): string {
  const h = createHash('sha256').update(digest).update(label).digest();
  return `2.25.${BigInt(`0x${h.subarray(0, 16).toString('hex')}`).toString()}`;
}

/** The default SIIM-like tags for an image whose pixels hash to `digest`. */
function defaultTags(digest: Buffer): SiimTags {
  const patient = digest.subarray(0, 8).toString('hex');
  return {
    specificCharacterSet: 'ISO_IR 100',
    sopClassUid: SECONDARY_CAPTURE,
    sopInstanceUid: derivedUid(digest, 'instance'),
    studyInstanceUid: derivedUid(digest, 'study'),
    seriesInstanceUid: derivedUid(digest, 'series'),
    studyDate: '19010101',
    studyTime: '000000.00',
    accessionNumber: '',
    modality: 'CR',
    conversionType: 'WSD',
    referringPhysicianName: '',
    seriesDescription: 'view: PA',
    patientName: patient,
    patientId: patient,
    patientBirthDate: '',
    patientSex: 'M',
    patientAge: '58',
    bodyPartExamined: 'CHEST',
    viewPosition: 'PA',
    studyId: '',
    seriesNumber: 1,
    instanceNumber: 1,
    patientOrientation: '',
    pixelSpacing: [0.168, 0.168],
  };
}

/** Formats a number as a Decimal String value (at most 16 characters, PS3.5 6.2). */
export function formatDs(value: number): string {
  if (!Number.isFinite(value)) throw invalidParameterError('a DS value', 'a finite number', value);
  let text = String(value);
  for (let digits = 15; text.length > 16 && digits > 0; digits -= 1) text = String(Number(value.toPrecision(digits)));
  return text;
}

const multi = (values: number | number[]) => (Array.isArray(values) ? values : [values]).map(formatDs).join('\\');

function validate(image: DicomImageData, options: DicomWriteOptions): { frames: number; bitsAllocated: 8 | 16; bitsStored: number } {
  if (!is.defined(image) || typeof image !== 'object') throw invalidParameterError('image', 'an object', image);
  if (!is.defined(options) || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  assertOneOf('options.encoding', options.encoding, ENCODINGS);
  assertInteger('image.width', image.width, 1, 0xffff);
  assertInteger('image.height', image.height, 1, 0xffff);
  const { pixels } = image;
  if (!(pixels instanceof Uint8Array || pixels instanceof Uint16Array || pixels instanceof Int16Array)) {
    throw invalidParameterError('image.pixels', 'a Uint8Array, Uint16Array or Int16Array', pixels);
  }
  const frameSize = image.width * image.height;
  if (options.frames !== undefined) assertInteger('options.frames', options.frames, 1);
  const frames = options.frames ?? Math.max(1, Math.round(pixels.length / frameSize));
  if (pixels.length !== frameSize * frames) {
    throw invalidParameterError('image.pixels', `${frames} frame(s) of ${image.width}x${image.height} = ${frameSize * frames} samples`, pixels);
  }
  const bitsAllocated = pixels instanceof Uint8Array ? 8 : 16;
  const bitsStored = image.bitsStored ?? bitsAllocated;
  assertInteger('image.bitsStored', bitsStored, 1, bitsAllocated);
  if (options.encoding === 'jpeg-baseline' && (bitsAllocated !== 8 || bitsStored !== 8)) {
    throw invalidParameterError('image.pixels', 'a Uint8Array with bitsStored 8 for JPEG Baseline', pixels);
  }
  const signed = pixels instanceof Int16Array;
  const max = signed ? 2 ** (bitsStored - 1) - 1 : 2 ** bitsStored - 1;
  const min = signed ? -(2 ** (bitsStored - 1)) : 0;
  for (let i = 0; i < pixels.length; i += 1) {
    const v = pixels[i]!;
    if (v > max || v < min) throw invalidParameterError(`image.pixels[${i}]`, `a value between ${min} and ${max} (bitsStored ${bitsStored})`, v);
  }
  if (options.quality !== undefined) assertInteger('options.quality', options.quality, 1, 100);
  if (options.fragments !== undefined) assertInteger('options.fragments', options.fragments, 1);
  if (options.photometric !== undefined) assertOneOf('options.photometric', options.photometric, ['MONOCHROME2', 'MONOCHROME1'] as const);
  if (options.rescale) {
    assertNumber('options.rescale.slope', options.rescale.slope);
    assertNumber('options.rescale.intercept', options.rescale.intercept);
  }
  return { frames, bitsAllocated, bitsStored };
}

/** Encodes one 8-bit grayscale frame as a Baseline (SOF0) JPEG. */
async function encodeJpegFrame(pixels: Uint8Array, width: number, height: number, quality: number): Promise<Uint8Array> {
  // Without toColourspace('b-w') sharp writes a 3-component (YCbCr) JPEG from 1-channel input.
  const jpeg = await sharp(pixels, { raw: { width, height, channels: 1 } })
    .toColourspace('b-w')
    .jpeg({ quality, chromaSubsampling: '4:4:4', mozjpeg: false, progressive: false, trellisQuantisation: false, overshootDeringing: false, optimiseScans: false })
    .toBuffer();
  const info = readJpegFrameInfo(jpeg);
  if (info.sof !== 0xc0 || info.precision !== 8 || info.components !== 1) {
    throw new Error(`sharp produced a ${sofName(info.sof)} JPEG with ${info.components} component(s) at ${info.precision} bits, not Baseline 8-bit grayscale`);
  }
  return jpeg;
}

/** Splits a frame into `count` fragments of even length (the last one takes the rest). */
function splitFragments(bytes: Uint8Array, count: number): Uint8Array[] {
  if (count > Math.floor(bytes.length / 2)) {
    throw invalidParameterError('options.fragments', `at most ${Math.floor(bytes.length / 2)} for a ${bytes.length}-byte frame`, count);
  }
  const size = Math.floor(bytes.length / count / 2) * 2;
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i += 1) out.push(bytes.subarray(i * size, i === count - 1 ? bytes.length : (i + 1) * size));
  return out;
}

/**
 * Writes a DICOM Part 10 file holding `image`, with SIIM-like tags by default.
 *
 * JPEG Baseline frames are encoded by sharp (libjpeg-turbo, 4:4:4, no progressive scans), one
 * fragment per frame unless `fragments` is set. Native encodings write the samples as given
 * (8-bit as OB, 16-bit as OW in explicit VR). `rescale`, `window` and `photometric` only write
 * their tags: the pixels are stored unchanged, so a reader must apply them.
 *
 * @returns the file's bytes
 * @throws TypeError naming the bad parameter
 */
export async function writeDicom(image: DicomImageData, options: DicomWriteOptions): Promise<Buffer> {
  const { frames, bitsAllocated, bitsStored } = validate(image, options);
  const { width, height, pixels } = image;
  const pixelBytes = new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  const digest = createHash('sha256').update(pixelBytes).update(`${width}x${height}`).digest();
  const tags: SiimTags = { ...defaultTags(digest) };
  const omitted = new Set<string>();
  for (const [key, value] of Object.entries(options.tags ?? {})) {
    if (value === null) omitted.add(key);
    else if (value !== undefined) (tags as unknown as Record<string, unknown>)[key] = value;
  }
  const has = (key: keyof SiimTags) => !omitted.has(key) && tags[key] !== undefined;
  const transferSyntax =
    options.encoding === 'jpeg-baseline' ? JPEG_BASELINE : options.encoding === 'explicit-le' ? EXPLICIT_VR_LITTLE_ENDIAN : IMPLICIT_VR_LITTLE_ENDIAN;
  const explicit = options.encoding !== 'implicit-le';

  const text: [number, keyof SiimTags, DataElement['vr']][] = [
    [0x00080005, 'specificCharacterSet', 'CS'],
    [0x00080016, 'sopClassUid', 'UI'],
    [0x00080018, 'sopInstanceUid', 'UI'],
    [0x00080020, 'studyDate', 'DA'],
    [0x00080030, 'studyTime', 'TM'],
    [0x00080050, 'accessionNumber', 'SH'],
    [0x00080060, 'modality', 'CS'],
    [0x00080064, 'conversionType', 'CS'],
    [0x00080090, 'referringPhysicianName', 'PN'],
    [0x0008103e, 'seriesDescription', 'LO'],
    [0x00100010, 'patientName', 'PN'],
    [0x00100020, 'patientId', 'LO'],
    [0x00100030, 'patientBirthDate', 'DA'],
    [0x00100040, 'patientSex', 'CS'],
    [0x00101010, 'patientAge', 'AS'],
    [0x00180015, 'bodyPartExamined', 'CS'],
    [0x00181164, 'imagerPixelSpacing', 'DS'],
    [0x00185101, 'viewPosition', 'CS'],
    [0x0020000d, 'studyInstanceUid', 'UI'],
    [0x0020000e, 'seriesInstanceUid', 'UI'],
    [0x00200010, 'studyId', 'SH'],
    [0x00200011, 'seriesNumber', 'IS'],
    [0x00200013, 'instanceNumber', 'IS'],
    [0x00200020, 'patientOrientation', 'CS'],
    [0x00280030, 'pixelSpacing', 'DS'],
  ];
  const elements: DataElement[] = [];
  for (const [tag, key, vr] of text) {
    if (!has(key)) continue;
    const value = tags[key];
    elements.push({ tag, vr, value: Array.isArray(value) ? multi(value) : typeof value === 'number' ? String(value) : String(value) });
  }
  const photometric = options.photometric ?? 'MONOCHROME2';
  elements.push(
    { tag: 0x00280002, vr: 'US', value: [1] },
    { tag: 0x00280004, vr: 'CS', value: photometric },
    { tag: 0x00280010, vr: 'US', value: [height] },
    { tag: 0x00280011, vr: 'US', value: [width] },
    { tag: 0x00280100, vr: 'US', value: [bitsAllocated] },
    { tag: 0x00280101, vr: 'US', value: [bitsStored] },
    { tag: 0x00280102, vr: 'US', value: [bitsStored - 1] },
    { tag: 0x00280103, vr: 'US', value: [pixels instanceof Int16Array ? 1 : 0] },
  );
  if (frames > 1) elements.push({ tag: 0x00280008, vr: 'IS', value: String(frames) });
  if (options.window) {
    elements.push({ tag: 0x00281050, vr: 'DS', value: multi(options.window.center) }, { tag: 0x00281051, vr: 'DS', value: multi(options.window.width) });
  }
  if (options.rescale) {
    elements.push(
      { tag: 0x00281052, vr: 'DS', value: formatDs(options.rescale.intercept) },
      { tag: 0x00281053, vr: 'DS', value: formatDs(options.rescale.slope) },
    );
  }
  if (options.encoding === 'jpeg-baseline') elements.push({ tag: 0x00282110, vr: 'CS', value: '01' });
  elements.sort((a, b) => a.tag - b.tag);

  let pixelData: Buffer;
  if (options.encoding === 'jpeg-baseline') {
    const frameSize = width * height;
    const encoded: Uint8Array[][] = [];
    for (let f = 0; f < frames; f += 1) {
      const jpeg = await encodeJpegFrame(pixelBytes.subarray(f * frameSize, (f + 1) * frameSize), width, height, options.quality ?? 90);
      encoded.push(splitFragments(jpeg, options.fragments ?? 1));
    }
    pixelData = encodeEncapsulatedPixelData(encoded, options.offsetTable ?? true);
  } else {
    pixelData = encodeElement({ tag: 0x7fe00010, vr: bitsAllocated === 8 ? 'OB' : 'OW', value: pixelBytes }, explicit);
  }

  const meta = Buffer.concat(
    (
      [
        { tag: 0x00020001, vr: 'OB', value: new Uint8Array([0, 1]) },
        { tag: 0x00020002, vr: 'UI', value: has('sopClassUid') ? tags.sopClassUid : SECONDARY_CAPTURE },
        { tag: 0x00020003, vr: 'UI', value: tags.sopInstanceUid },
        { tag: 0x00020010, vr: 'UI', value: transferSyntax },
        { tag: 0x00020012, vr: 'UI', value: IMPLEMENTATION_CLASS_UID },
        { tag: 0x00020013, vr: 'SH', value: 'PNEUMO_NATIVE' },
      ] satisfies DataElement[]
    ).map((e) => encodeElement(e, true)),
  );
  const groupLength = encodeElement({ tag: 0x00020000, vr: 'UL', value: [meta.length] }, true);
  const preamble = Buffer.alloc(132);
  preamble.write('DICM', 128, 'latin1');
  return Buffer.concat([preamble, groupLength, meta, ...elements.map((e) => encodeElement(e, explicit)), pixelData]);
}
