/** Shared inputs of the serving tests: a tiny model, synthetic chest images in every format. */
import sharp from 'sharp';
import { writeDicom } from '../../src/data/dicom.js';
import { generateImage } from '../../src/data/synth/index.js';
import { Model } from '../../src/models/model.js';

/** Inference size of the serving tests (tiny: the tests check behaviour, not accuracy). */
export const SIZE = 64;
/** Side of the synthetic images (the mask comes back at this size). */
export const IMAGE = 128;

/** A small untrained UNet (ResNet18 encoder, narrow decoder); 3 input channels as the zoo's default. */
export function tinyModel(seed = 7, inChannels = 3): Promise<Model> {
  return Model.create({ backbone: 'tiny_unet_r18', seed, inChannels });
}

/** 8-bit gray pixels of a synthetic chest X-ray. */
export function chestPixels(index = 0, size = IMAGE): Uint8Array {
  return generateImage({ seed: 11, split: 'train', index, positive: index % 2 === 0, size }).pixels;
}

export interface ChestFiles {
  pixels: Uint8Array;
  /** SIIM-like: JPEG Baseline pixel data. */
  dicomJpeg: Buffer;
  /** Lossless: explicit VR little endian. */
  dicomRaw: Buffer;
  png: Buffer;
  jpeg: Buffer;
}

export async function chestFiles(index = 0, size = IMAGE): Promise<ChestFiles> {
  const pixels = chestPixels(index, size);
  const image = { pixels, width: size, height: size };
  return {
    pixels,
    dicomJpeg: await writeDicom(image, { encoding: 'jpeg-baseline', quality: 90 }),
    dicomRaw: await writeDicom(image, { encoding: 'explicit-le' }),
    png: await sharp(pixels, { raw: { width: size, height: size, channels: 1 } }).png().toBuffer(),
    jpeg: await sharp(pixels, { raw: { width: size, height: size, channels: 1 } }).jpeg({ quality: 90 }).toBuffer(),
  };
}

/**
 * A copy of an explicit-VR-little-endian DICOM with Rows (0028,0010) and Columns (0028,0011) set
 * to `rows` x `columns` (the pixel data left as it is).
 */
export function withDimensions(dicom: Buffer, rows: number, columns: number): Buffer {
  const out = Buffer.from(dicom);
  const patch = (element: number, value: number): void => {
    const tag = Buffer.from([0x28, 0x00, element, 0x00, 0x55, 0x53, 0x02, 0x00]); // (0028,xxxx) US, length 2
    const at = out.indexOf(tag, 132);
    if (at < 0) throw new Error(`tag (0028,00${element.toString(16)}) not found`);
    out.writeUInt16LE(value, at + 8);
  };
  patch(0x10, rows);
  patch(0x11, columns);
  return out;
}

/** Deterministic pseudo-random bytes. */
export function randomBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 1) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}
