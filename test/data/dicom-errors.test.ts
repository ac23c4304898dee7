import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { type DicomImage, DicomError, read, readHeader } from '../../src/data/dicom.js';
import { writeDicom } from '../../src/data/dicom-write.js';
import { encodeEncapsulatedPixelData } from '../../src/data/dicom/elements.js';
import { patchBytes, removeShortElement, tempDir, testImage } from './dicom-fixtures.js';

const W = 64;
const H = 48;
const source = testImage(W, H);
const tmp = tempDir('dicom-errors');
afterAll(() => tmp.cleanup());

/** Writes `bytes` to a named file and returns the error read() rejects with. */
async function errorOf(name: string, bytes: Uint8Array): Promise<DicomError> {
  const path = join(tmp.dir, name);
  writeFileSync(path, bytes);
  const err = await read(path).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DicomError);
  expect((err as DicomError).file).toBe(path);
  expect((err as DicomError).message.startsWith(`${path}: `)).toBe(true);
  return err as DicomError;
}

const jpegFile = () => writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline' });
const explicitFile = () => writeDicom({ pixels: source, width: W, height: H }, { encoding: 'explicit-le' });

describe('dicom.read rejects bad files with the file and the reason', () => {
  it.each([
    ['1.2.840.10008.1.2.4.90', 'JPEG 2000 Image Compression (Lossless Only)'],
    ['1.2.840.10008.1.2.4.91', 'JPEG 2000 Image Compression'],
    ['1.2.840.10008.1.2.4.80', 'JPEG-LS Lossless Image Compression'],
    ['1.2.840.10008.1.2.4.81', 'JPEG-LS Lossy (Near-Lossless) Image Compression'],
    ['1.2.840.10008.1.2.4.51', 'JPEG Extended (Process 2 & 4), 12-bit'],
    ['1.2.840.10008.1.2.4.57', 'JPEG Lossless, Non-Hierarchical (Process 14)'],
    ['1.2.840.10008.1.2.4.70', 'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])'],
    ['1.2.840.10008.1.2.1.99', 'Deflated Explicit VR Little Endian'],
    ['1.2.840.10008.1.2.4.99', 'unknown transfer syntax'],
  ])('unsupported transfer syntax %s', async (uid, name) => {
    // Same-length UIDs keep the file meta group length valid.
    const err = await errorOf(`ts-${uid}.dcm`, patchBytes(await jpegFile(), '1.2.840.10008.1.2.4.50', uid));
    expect(err.reason).toContain(`unsupported transfer syntax ${name} (${uid})`);
    expect(err.reason).toContain('supported: Implicit VR Little Endian, Explicit VR Little Endian, JPEG Baseline (Process 1)');
  });

  it.each([
    ['1.2.840.10008.1.2.5\0', 'RLE Lossless (1.2.840.10008.1.2.5)'],
    ['1.2.840.10008.1.2.2\0', 'Explicit VR Big Endian (1.2.840.10008.1.2.2)'],
  ])('unsupported transfer syntax %s (native data)', async (uid, text) => {
    const err = await errorOf(`ts-native-${uid.replace('\0', '')}.dcm`, patchBytes(await explicitFile(), '1.2.840.10008.1.2.1\0', uid));
    expect(err.reason).toContain(`unsupported transfer syntax ${text}`);
  });

  it('empty file, short file, missing DICM prefix, missing file meta, no transfer syntax', async () => {
    expect((await errorOf('empty.dcm', new Uint8Array(0))).reason).toBe('the file is empty');
    expect((await errorOf('short.dcm', Buffer.from('hello'))).reason).toBe(
      'not a DICOM Part 10 file: only 5 bytes, too short for the 128-byte preamble and the "DICM" prefix',
    );
    const file = await explicitFile();
    expect((await errorOf('no-dicm.dcm', file.subarray(132))).reason).toBe(
      'not a DICOM Part 10 file: no "DICM" prefix at byte 128 (missing preamble / file meta information)',
    );
    const metaLength = file.readUInt32LE(140);
    const withoutMeta = Buffer.concat([file.subarray(0, 132), file.subarray(144 + metaLength)]);
    expect((await errorOf('no-meta.dcm', withoutMeta)).reason).toBe('the file meta information (group 0002) is missing after the "DICM" prefix');
    const noSyntax = patchBytes(file, Buffer.from([0x02, 0, 0x10, 0, 0x55, 0x49]), Buffer.from([0x02, 0, 0x11, 0, 0x55, 0x49]));
    expect((await errorOf('no-ts.dcm', noSyntax)).reason).toBe('the file meta information has no Transfer Syntax UID (0002,0010)');
    expect((await errorOf('meta-only.dcm', file.subarray(0, 144 + metaLength))).reason).toBe('the file ends after its file meta information: no data set');
  });

  it('truncated native pixel data and wrong lengths name the byte counts', async () => {
    const file = await explicitFile();
    const err = await errorOf('truncated-native.dcm', file.subarray(0, file.length - 100));
    expect(err.reason).toBe(`the Pixel Data holds ${W * H - 100} bytes but ${H} rows x ${W} columns x 1 byte(s) need ${W * H} (truncated or wrong length)`);
    // Rows says 49 while the data holds 48 rows.
    const wrongRows = patchBytes(file, Buffer.from([0x28, 0, 0x10, 0, 0x55, 0x53, 2, 0, H, 0]), Buffer.from([0x28, 0, 0x10, 0, 0x55, 0x53, 2, 0, H + 1, 0]));
    expect((await errorOf('wrong-rows.dcm', wrongRows)).reason).toContain(`holds ${W * H} bytes but ${H + 1} rows x ${W} columns x 1 byte(s) need ${W * (H + 1)}`);
    // A corrupt 4 GiB length is caught, not allocated.
    const pixelHeader = Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42, 0, 0]);
    const lengthAt = file.indexOf(pixelHeader) + 8;
    const huge = Buffer.from(file);
    huge.writeUInt32LE(0xfffffff0, lengthAt);
    expect((await errorOf('huge-length.dcm', huge)).reason).toBe(`the Pixel Data element declares ${0xfffffff0} bytes but only ${W * H} remain in the file (truncated or corrupt length)`);
    const nameAt = file.indexOf(Buffer.from([0x10, 0, 0x10, 0, 0x50, 0x4e]));
    const badName = Buffer.from(file);
    badName.writeUInt16LE(0xfff0, nameAt + 6);
    expect((await errorOf('bad-name-length.dcm', badName)).reason).toMatch(/^the file is truncated: the value of element \(0010,0010\) \(65520 bytes\)/);
    const frames = await writeDicom({ pixels: new Uint16Array(W * H * 2), width: W, height: H }, { encoding: 'implicit-le' });
    expect((await errorOf('truncated-frames.dcm', frames.subarray(0, frames.length - 10))).reason).toContain('x 2 byte(s) x 2 frames need');
  });

  it('truncated or corrupt JPEG pixel data', async () => {
    const file = await jpegFile();
    const err = await errorOf('truncated-jpeg.dcm', file.subarray(0, Math.floor(file.length * 0.9)));
    expect(err.reason).toMatch(/^the encapsulated Pixel Data is truncated: fragment 0 declares \d+ bytes but only \d+ remain$/);
    expect((await errorOf('no-delimiter.dcm', file.subarray(0, file.length - 8))).reason).toBe(
      'the encapsulated Pixel Data is truncated: the file ends after 1 fragment(s), before the sequence delimiter',
    );
    // A well-formed DICOM around a JPEG stream cut in half: the decoder reports it.
    const pixelAt = file.indexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42]));
    const jpeg = await sharp(source, { raw: { width: W, height: H, channels: 1 } }).toColourspace('b-w').jpeg().toBuffer();
    const halfJpeg = Buffer.concat([file.subarray(0, pixelAt), encodeEncapsulatedPixelData([[jpeg.subarray(0, jpeg.length >> 1)]], true)]);
    expect((await errorOf('half-jpeg.dcm', halfJpeg)).reason).toMatch(/^the JPEG data of frame 0 is truncated or corrupt \(.+\)$/);
    const lossy12 = patchBytes(file, Buffer.from([0xff, 0xc0, 0x00, 0x0b, 0x08]), Buffer.from([0xff, 0xc1, 0x00, 0x0b, 0x0c]));
    expect((await errorOf('jpeg-12bit.dcm', lossy12)).reason).toBe('frame 0 is a 12-bit Extended sequential DCT (SOF1) JPEG; only 8-bit DCT JPEG (Baseline) is supported');
    const notJpeg = patchBytes(file, Buffer.from([0xff, 0xd8, 0xff]), Buffer.from([0x00, 0xd8, 0xff]));
    expect((await errorOf('not-jpeg.dcm', notJpeg)).reason).toBe('frame 0 is not a valid JPEG stream: the frame does not start with a JPEG SOI marker (ff d8)');
    const wrongSize = patchBytes(file, Buffer.from([0x28, 0, 0x11, 0, 0x55, 0x53, 2, 0, W, 0]), Buffer.from([0x28, 0, 0x11, 0, 0x55, 0x53, 2, 0, W + 2, 0]));
    expect((await errorOf('jpeg-size.dcm', wrongSize)).reason).toBe(`the JPEG frame is ${W}x${H} but Columns x Rows say ${W + 2}x${H}`);
  });

  it('missing Rows / Columns / BitsAllocated / Pixel Data', async () => {
    const file = await explicitFile();
    expect((await errorOf('no-rows.dcm', removeShortElement(file, 0x28, 0x10, 'US'))).reason).toBe('missing or invalid Rows (0028,0010)');
    expect((await errorOf('no-cols.dcm', removeShortElement(file, 0x28, 0x11, 'US'))).reason).toBe('missing or invalid Columns (0028,0011)');
    expect((await errorOf('no-bits.dcm', removeShortElement(file, 0x28, 0x100, 'US'))).reason).toBe('missing BitsAllocated (0028,0100)');
    const pixelAt = file.indexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00]));
    expect((await errorOf('no-pixels.dcm', file.subarray(0, pixelAt))).reason).toBe('the file has no Pixel Data (7FE0,0010)');
  });

  it('names "<buffer>" for in-memory input and reports unreadable paths', async () => {
    const err = await read(Buffer.from('junk')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DicomError);
    expect((err as Error).message).toMatch(/^<buffer>: not a DICOM Part 10 file/);
    const missing = join(tmp.dir, 'does-not-exist.dcm');
    await expect(read(missing)).rejects.toThrow(`${missing}: cannot read the file: ENOENT`);
    await expect(readHeader(missing)).rejects.toThrow(DicomError);
    await expect(read(42 as never)).rejects.toThrow('Expected a file path or a Uint8Array/Buffer for source but received 42');
  });

  it('never crashes or hangs on truncated or corrupted files: always an image or a DicomError', async () => {
    const files = [await jpegFile(), await explicitFile(), await writeDicom({ pixels: new Uint16Array(W * H), width: W, height: H }, { encoding: 'implicit-le' })];
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let failures = 0;
    let successes = 0;
    for (const file of files) {
      for (let trial = 0; trial < 40; trial += 1) {
        const bytes = Buffer.from(file);
        let candidate: Buffer;
        if (trial % 2 === 0) candidate = bytes.subarray(0, Math.floor(next() * bytes.length));
        else {
          for (let k = 0; k < 8; k += 1) bytes[132 + Math.floor(next() * (bytes.length - 132))] = Math.floor(next() * 256);
          candidate = bytes;
        }
        const outcome: DicomImage | Error = await read(candidate).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
        if (outcome instanceof Error) {
          expect(outcome).toBeInstanceOf(DicomError);
          failures += 1;
        } else {
          expect(outcome.pixels.length).toBe(outcome.width * outcome.height);
          successes += 1;
        }
      }
    }
    expect(failures).toBeGreaterThan(20);
    expect(failures + successes).toBe(120);
  });
});
