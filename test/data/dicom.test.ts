import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { findDicoms, read, readHeader } from '../../src/data/dicom.js';
import { readJpegFrameInfo } from '../../src/data/dicom/jpeg.js';
import { applyWindow } from '../../src/data/dicom/pixels.js';
import { formatDs, writeDicom } from '../../src/data/dicom-write.js';
import { readImageBatch } from '../../src/data/batch.js';
import { loadImage } from '../../src/data/image-source.js';
import { meanAbsDiff, tempDir, testImage } from './dicom-fixtures.js';

const W = 96;
const H = 80; // not square, so a transposition would show
const source = testImage(W, H);
const tmp = tempDir('dicom');
afterAll(() => tmp.cleanup());

/** The JPEG the writer embeds, made independently with the same settings. */
async function referenceJpeg(pixels: Uint8Array, quality = 90): Promise<Buffer> {
  return sharp(pixels, { raw: { width: W, height: H, channels: 1 } })
    .toColourspace('b-w')
    .jpeg({ quality, chromaSubsampling: '4:4:4', mozjpeg: false, progressive: false, trellisQuantisation: false, overshootDeringing: false, optimiseScans: false })
    .toBuffer();
}

async function sharpDecode(jpeg: Buffer): Promise<Uint8Array> {
  return new Uint8Array(await sharp(jpeg).toColourspace('b-w').raw().toBuffer());
}

describe('dicom.read on files the project writes', () => {
  it.each(['explicit-le', 'implicit-le'] as const)('reads 8-bit %s pixel-exact with the SIIM metadata', async (encoding) => {
    const path = join(tmp.dir, `native-${encoding}.dcm`);
    writeFileSync(path, await writeDicom({ pixels: source, width: W, height: H }, { encoding, tags: { viewPosition: 'AP', patientSex: 'F', pixelSpacing: [0.143, 0.145] } }));
    const image = await read(path);
    expect(image.width).toBe(W);
    expect(image.height).toBe(H);
    expect(Buffer.from(image.pixels).equals(Buffer.from(source))).toBe(true);
    expect(image).toMatchObject({
      id: `native-${encoding}`,
      rows: H,
      columns: W,
      viewPosition: 'AP',
      sex: 'F',
      age: 58,
      modality: 'CR',
      bodyPart: 'CHEST',
      pixelSpacing: [0.143, 0.145],
      photometric: 'MONOCHROME2',
      bitsStored: 8,
      frames: 1,
      transferSyntax: { uid: encoding === 'explicit-le' ? '1.2.840.10008.1.2.1' : '1.2.840.10008.1.2', name: encoding === 'explicit-le' ? 'Explicit VR Little Endian' : 'Implicit VR Little Endian' },
    });
  });

  it('writes Baseline (SOF0) 8-bit grayscale JPEG and reads it exactly as sharp decodes that JPEG', async () => {
    const file = await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline' });
    const jpeg = await referenceJpeg(source);
    expect(file.indexOf(jpeg)).toBeGreaterThan(132); // the very same JPEG is embedded
    expect(readJpegFrameInfo(jpeg)).toEqual({ sof: 0xc0, precision: 8, width: W, height: H, components: 1 });
    const image = await read(file);
    expect(image.transferSyntax).toEqual({ uid: '1.2.840.10008.1.2.4.50', name: 'JPEG Baseline (Process 1)' });
    expect(image.id).toBe(image.sopInstanceUid); // from a buffer the id is the SOP Instance UID
    expect(Buffer.from(image.pixels).equals(Buffer.from(await sharpDecode(jpeg)))).toBe(true);
    expect(meanAbsDiff(image.pixels, source)).toBeLessThan(3);
  });

  it('joins a JPEG frame split over several fragments, with and without a Basic Offset Table', async () => {
    const whole = await read(await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline' }));
    for (const offsetTable of [true, false]) {
      const file = await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline', fragments: 5, offsetTable });
      const image = await read(file);
      expect(Buffer.from(image.pixels).equals(Buffer.from(whole.pixels))).toBe(true);
    }
  });

  it('inverts MONOCHROME1 to the MONOCHROME2 convention (native and JPEG)', async () => {
    const native = await read(await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'explicit-le', photometric: 'MONOCHROME1' }));
    expect(native.photometric).toBe('MONOCHROME1');
    expect(Array.from(native.pixels)).toEqual(Array.from(source, (v) => 255 - v));
    const jpeg = await read(await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline', photometric: 'MONOCHROME1' }));
    const decoded = await sharpDecode(await referenceJpeg(source));
    expect(Array.from(jpeg.pixels)).toEqual(Array.from(decoded, (v) => 255 - v));
  });

  it('applies Rescale Slope/Intercept then the first VOI window to 16-bit data (hand-computed)', async () => {
    // stored -> rescaled (x2 - 100) -> window c=1000 w=2001: y = ((x - 999.5) / 2000 + 0.5) * 255
    const stored = [0, 300, 550, 800, 1100, 4095];
    const expected = [0, 64, 128, 191, 255, 255]; // -100->0, 500->63.81, 1000->127.56, 1500->191.31, 2100->255
    const pixels = new Uint16Array(6 * 2);
    stored.forEach((v, i) => {
      pixels[i] = v;
      pixels[6 + i] = v;
    });
    for (const encoding of ['explicit-le', 'implicit-le'] as const) {
      const file = await writeDicom(
        { pixels, width: 6, height: 2, bitsStored: 12 },
        { encoding, rescale: { slope: 2, intercept: -100 }, window: { center: [1000, 40], width: [2001, 80] } },
      );
      const image = await read(file);
      expect(image.bitsStored).toBe(12);
      expect(image.window).toEqual({ center: 1000, width: 2001 });
      expect(image.rescale).toEqual({ slope: 2, intercept: -100 });
      expect(Array.from(image.pixels)).toEqual([...expected, ...expected]);
      const inverted = await read(
        await writeDicom({ pixels, width: 6, height: 2, bitsStored: 12 }, { encoding, photometric: 'MONOCHROME1', rescale: { slope: 2, intercept: -100 }, window: { center: 1000, width: 2001 } }),
      );
      expect(Array.from(inverted.pixels)).toEqual([...expected, ...expected].map((v) => 255 - v));
    }
    expect(applyWindow(1000, 1000, 2001)).toBeCloseTo(127.5637, 3);
  });

  it('maps 16-bit data without a window by its min-max, signed per PixelRepresentation', async () => {
    const pixels = new Int16Array([-1000, 0, 1000, -1000]);
    const image = await read(await writeDicom({ pixels, width: 2, height: 2 }, { encoding: 'explicit-le' }));
    expect(image.pixelRepresentation).toBe(1);
    expect(Array.from(image.pixels)).toEqual([0, 128, 255, 0]);
    const unsigned = await read(await writeDicom({ pixels: new Uint16Array([500, 1500, 1000, 500]), width: 2, height: 2 }, { encoding: 'implicit-le' }));
    expect(Array.from(unsigned.pixels)).toEqual([0, 255, 128, 0]);
  });

  it('uses frame 0 of multi-frame files (native, JPEG with and without offset table)', async () => {
    const frames = [testImage(W, H, 0), testImage(W, H, 40), testImage(W, H, 80)];
    const all = new Uint8Array(W * H * 3);
    frames.forEach((f, i) => all.set(f, i * W * H));
    const native = await read(await writeDicom({ pixels: all, width: W, height: H }, { encoding: 'implicit-le' }));
    expect(native.frames).toBe(3);
    expect(Buffer.from(native.pixels).equals(Buffer.from(frames[0]!))).toBe(true);
    const frame0 = await sharpDecode(await referenceJpeg(frames[0]!));
    for (const offsetTable of [true, false]) {
      for (const fragments of [1, 3]) {
        const jpeg = await read(await writeDicom({ pixels: all, width: W, height: H }, { encoding: 'jpeg-baseline', frames: 3, fragments, offsetTable }));
        expect(jpeg.frames).toBe(3);
        expect(Buffer.from(jpeg.pixels).equals(Buffer.from(frame0))).toBe(true);
      }
    }
  });

  it('is lenient about tags: ages with or without unit, empty dates, ImagerPixelSpacing fallback', async () => {
    const cases: [string, number | undefined][] = [['58', 58], ['058Y', 58], ['6M', 0.5], ['', undefined], ['unknown', undefined]];
    for (const [patientAge, age] of cases) {
      const header = await readHeader(
        await writeDicom(
          { pixels: source, width: W, height: H },
          { encoding: 'explicit-le', tags: { patientAge, studyDate: '', patientBirthDate: '', pixelSpacing: null, imagerPixelSpacing: [0.15, 0.16], patientSex: '' } },
        ),
      );
      expect(header.age).toBe(age);
      expect(header.pixelSpacing).toEqual([0.15, 0.16]);
      expect(header.sex).toBeUndefined();
    }
    const bare = await readHeader(await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'explicit-le', tags: { pixelSpacing: null, viewPosition: null } }));
    expect(bare.pixelSpacing).toBeUndefined();
    expect(bare.viewPosition).toBeUndefined();
  });

  it('resizes with the size option: native exactly like a bilinear resize, JPEG close to it', async () => {
    const expected = new Uint8Array(await sharp(source, { raw: { width: W, height: H, channels: 1 } }).resize(40, 40, { fit: 'fill', kernel: 'linear' }).toColourspace('b-w').raw().toBuffer());
    const native = await read(await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'explicit-le' }), { size: 40 });
    expect([native.width, native.height, native.rows, native.columns]).toEqual([40, 40, H, W]);
    expect(Buffer.from(native.pixels).equals(Buffer.from(expected))).toBe(true);
    const jpeg = await read(await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline' }), { size: 40 });
    expect(jpeg.pixels.length).toBe(1600);
    expect(meanAbsDiff(jpeg.pixels, expected)).toBeLessThan(4);
    const up = await read(await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline' }), { size: 128 });
    expect(up.pixels.length).toBe(128 * 128);
    await expect(read(Buffer.alloc(0), { size: 0 })).rejects.toThrow('Expected an integer between 1 and 65535 for options.size but received 0');
  });

  it('readHeader gives the metadata without pixels, also for syntaxes read() cannot decode', async () => {
    const path = join(tmp.dir, 'header-j2k.dcm');
    const file = await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline' });
    writeFileSync(path, Buffer.from(file.toString('latin1').replace('1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.90'), 'latin1'));
    const header = await readHeader(path);
    expect(header).toMatchObject({ id: 'header-j2k', rows: H, columns: W, transferSyntax: { uid: '1.2.840.10008.1.2.4.90', name: 'JPEG 2000 Image Compression (Lossless Only)' } });
    expect('pixels' in header).toBe(false);
  });
});

describe('dicom.findDicoms and loadImage', () => {
  it('maps ids to paths in the SIIM layout and names both paths of a duplicate id', async () => {
    const root = join(tmp.dir, 'tree');
    const file = await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline' });
    for (const [study, series, id] of [['1.2.3', '1.2.3.4', 'a1'], ['1.2.5', '1.2.5.6', 'b2'], ['1.2.7', '1.2.7.8', 'c3']]) {
      mkdirSync(join(root, study!, series!), { recursive: true });
      writeFileSync(join(root, study!, series!, `${id}.dcm`), file);
    }
    writeFileSync(join(root, '1.2.3', 'notes.txt'), 'not a dicom');
    const found = await findDicoms(root);
    expect([...found.keys()]).toEqual(['a1', 'b2', 'c3']);
    expect(found.get('b2')).toBe(join(root, '1.2.5', '1.2.5.6', 'b2.dcm'));
    mkdirSync(join(root, 'other'), { recursive: true });
    writeFileSync(join(root, 'other', 'b2.dcm'), file);
    await expect(findDicoms(root)).rejects.toThrow(`duplicate image id "b2" under ${root}: ${join(root, '1.2.5', '1.2.5.6', 'b2.dcm')} and ${join(root, 'other', 'b2.dcm')}`);
    await expect(findDicoms(join(root, 'missing'))).rejects.toThrow(/cannot list the DICOM directory .*missing/);
  });

  it('loadImage reads .dcm and prepared .png to size x size', async () => {
    const dcm = join(tmp.dir, 'load.dcm');
    writeFileSync(dcm, await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'explicit-le' }));
    const png = join(tmp.dir, 'load.png');
    await sharp(source, { raw: { width: W, height: H, channels: 1 } }).png().toFile(png);
    const fromDicom = await loadImage(dcm, 48);
    const fromPng = await loadImage(png, 48);
    expect(fromDicom.length).toBe(48 * 48);
    expect(Buffer.from(fromPng).equals(Buffer.from(fromDicom))).toBe(true);
    // Exactly what training reads: readImageBatch's uint8 row at that size.
    expect(Buffer.from(await loadImage(png, 96)).equals(Buffer.from((await readImageBatch([png], { size: 96 })).takeData('uint8')))).toBe(true);
    expect(Buffer.from(await loadImage(dcm, 96)).equals(Buffer.from((await readImageBatch([dcm], { size: 96 })).takeData('uint8')))).toBe(true);
    writeFileSync(join(tmp.dir, 'junk.png'), 'junk');
    await expect(loadImage(join(tmp.dir, 'junk.png'), 48)).rejects.toThrow(/junk\.png: the input is not a DICOM .*, PNG or JPEG file/);
    await expect(loadImage(join(tmp.dir, 'missing.png'), 48)).rejects.toThrow(/missing\.png: cannot read the file \(ENOENT\)/);
  });
});

describe('writeDicom validation', () => {
  it('rejects bad parameters naming them', async () => {
    const image = { pixels: source, width: W, height: H };
    await expect(writeDicom(image, { encoding: 'jpeg-2000' as never })).rejects.toThrow('Expected one of jpeg-baseline, explicit-le, implicit-le for options.encoding but received "jpeg-2000"');
    await expect(writeDicom({ ...image, width: 95 }, { encoding: 'explicit-le' })).rejects.toThrow(/for image\.pixels/);
    await expect(writeDicom({ pixels: new Uint16Array(4), width: 2, height: 2 }, { encoding: 'jpeg-baseline' })).rejects.toThrow(/Uint8Array with bitsStored 8 for JPEG Baseline/);
    await expect(writeDicom({ pixels: new Uint16Array([0, 4096, 0, 0]), width: 2, height: 2, bitsStored: 12 }, { encoding: 'explicit-le' })).rejects.toThrow(
      'Expected a value between 0 and 4095 (bitsStored 12) for image.pixels[1] but received 4096',
    );
    await expect(writeDicom(image, { encoding: 'jpeg-baseline', quality: 0 })).rejects.toThrow(/options\.quality/);
    await expect(writeDicom(image, { encoding: 'jpeg-baseline', fragments: 100000 })).rejects.toThrow(/options\.fragments/);
  });

  it('is deterministic and formats decimal strings within 16 characters', async () => {
    const a = await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline' });
    const b = await writeDicom({ pixels: source, width: W, height: H }, { encoding: 'jpeg-baseline' });
    expect(a.equals(b)).toBe(true);
    expect(formatDs(0.1428571428571428)).toBe('0.14285714285714');
    expect(formatDs(-100)).toBe('-100');
    expect(formatDs(1e-20).length).toBeLessThanOrEqual(16);
  });
});
