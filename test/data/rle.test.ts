import { describe, expect, it } from 'vitest';
import {
  RleError,
  decode,
  decodeRuns,
  decodeUnion,
  decodeUnionRuns,
  encode,
  encodeRuns,
  intersectionArea,
  isEmptyRle,
  runsArea,
} from '../../src/data/rle.js';
import { Random } from '../../src/core/random.js';

/** Builds a row-major mask from [row, col] pairs. */
function maskOf(width: number, height: number, pixels: [number, number][]): Uint8Array {
  const mask = new Uint8Array(width * height);
  for (const [r, c] of pixels) mask[r * width + c] = 1;
  return mask;
}

/** The reference decoder written the obvious way (column-major index, then transposed). */
function naiveDecode(text: string, width: number, height: number): Uint8Array {
  const mask = new Uint8Array(width * height);
  if (text.trim() === '-1') return mask;
  const values = text.trim().split(/\s+/).map(Number);
  let pos = 0;
  for (let i = 0; i < values.length; i += 2) {
    pos += values[i]!;
    for (let k = pos; k < pos + values[i + 1]!; k++) mask[(k % height) * width + Math.floor(k / height)] = 1;
    pos += values[i + 1]!;
  }
  return mask;
}

const examples: { name: string; width: number; height: number; pixels: [number, number][]; rle: string }[] = [
  { name: '4x4 2x2 square', width: 4, height: 4, pixels: [[1, 1], [1, 2], [2, 1], [2, 2]], rle: '5 2 2 2' },
  { name: '3x3 run wrapping a column', width: 3, height: 3, pixels: [[1, 0], [2, 0], [0, 1]], rle: '1 3' },
  { name: '4 rows x 5 cols', width: 5, height: 4, pixels: [[0, 1], [3, 1], [0, 2]], rle: '4 1 2 2' },
  { name: 'empty', width: 4, height: 4, pixels: [], rle: '-1' },
];

describe('rle: SPEC examples', () => {
  for (const ex of examples) {
    it(`encodes ${ex.name}`, () => {
      expect(encode(maskOf(ex.width, ex.height, ex.pixels), ex.width, ex.height)).toBe(ex.rle);
    });
    it(`decodes ${ex.name}`, () => {
      expect(Array.from(decode(ex.rle, ex.width, ex.height))).toEqual(Array.from(maskOf(ex.width, ex.height, ex.pixels)));
    });
  }
});

describe('rle: round trips', () => {
  it('emits the run that reaches the last pixel', () => {
    const mask = maskOf(3, 3, [[1, 2], [2, 2]]);
    expect(encode(mask, 3, 3)).toBe('7 2');
    expect(Array.from(decode('7 2', 3, 3))).toEqual(Array.from(mask));
  });

  it('encodes a full mask as one run and decodes it back', () => {
    for (const [w, h] of [[1, 1], [4, 4], [5, 3], [1024, 1024]] as const) {
      const full = new Uint8Array(w * h).fill(1);
      expect(encode(full, w, h)).toBe(`0 ${w * h}`);
      expect(decode(`0 ${w * h}`, w, h).every((v) => v === 1)).toBe(true);
    }
  });

  it('treats any non-zero byte as inside and decodes to 0/1', () => {
    const mask = maskOf(4, 4, [[1, 1], [2, 2]]).map((v) => v * 255);
    expect(encode(mask, 4, 4)).toBe('5 1 4 1');
    expect(Array.from(decode('5 1 4 1', 4, 4))).toEqual(Array.from(mask.map((v) => (v ? 1 : 0))));
  });

  it('round-trips random masks of many shapes, agreeing with a naive decoder', () => {
    const rng = new Random(7);
    for (let trial = 0; trial < 300; trial++) {
      const width = rng.int(1, 23);
      const height = rng.int(1, 23);
      const density = rng.pick([0.02, 0.3, 0.7, 0.98]);
      const mask = new Uint8Array(width * height);
      for (let i = 0; i < mask.length; i++) mask[i] = rng.next() < density ? 1 : 0;
      if (trial % 3 === 0) mask[mask.length - 1] = 1; // last pixel set
      if (trial % 5 === 0) mask[0] = 1;
      const text = encode(mask, width, height);
      expect(Array.from(decode(text, width, height)), `${width}x${height} ${text}`).toEqual(Array.from(mask));
      expect(Array.from(naiveDecode(text, width, height))).toEqual(Array.from(mask));
    }
  });

  it('round-trips an unaligned view and odd widths (word-wise scans handle the edges)', () => {
    const backing = new Uint8Array(1 + 13 * 7);
    const mask = backing.subarray(1);
    mask[0] = 1;
    mask[mask.length - 1] = 1;
    mask[40] = 1;
    expect(Array.from(decode(encode(mask, 13, 7), 13, 7))).toEqual(Array.from(mask));
  });

  it('round-trips realistic 1024x1024 blobs', () => {
    const w = 1024;
    const h = 1024;
    const mask = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const a = ((x - 300) / 120) ** 2 + ((y - 400) / 200) ** 2 < 1;
        const b = ((x - 800) / 60) ** 2 + ((y - 100) / 90) ** 2 < 1;
        if (a || b) mask[y * w + x] = 1;
      }
    }
    const text = encode(mask, w, h);
    // Buffer.equals: vitest's deep equality is slow on a million elements.
    expect(Buffer.from(decode(text, w, h)).equals(Buffer.from(mask))).toBe(true);
    expect(Buffer.from(naiveDecode(text, w, h)).equals(Buffer.from(mask))).toBe(true);
    expect(runsArea(decodeRuns(text, w, h))).toBe(mask.reduce((s, v) => s + v, 0));
  });
});

describe('rle: tolerated input', () => {
  it('accepts leading, trailing and repeated spaces, " -1" and blank text', () => {
    expect(Array.from(decode('  5 2   2 2 ', 4, 4))).toEqual(Array.from(decode('5 2 2 2', 4, 4)));
    expect(decode(' -1', 4, 4).every((v) => v === 0)).toBe(true);
    expect(decode('-1 ', 4, 4).every((v) => v === 0)).toBe(true);
    expect(decode('', 4, 4).every((v) => v === 0)).toBe(true);
    expect(isEmptyRle(' -1')).toBe(true);
    expect(isEmptyRle('1 2')).toBe(false);
  });

  it('accepts zero-length runs and zero gaps, giving canonical runs', () => {
    expect(Array.from(decodeRuns('3 0 2 1', 4, 4))).toEqual([5, 6]);
    expect(Array.from(decodeRuns('1 2 0 3', 4, 4))).toEqual([1, 6]);
    expect(encode(decode('1 2 0 3', 4, 4), 4, 4)).toBe('1 5');
  });
});

describe('rle: unions', () => {
  it('unions several rows of one image', () => {
    const union = decodeUnion(['0 2', '1 3', '-1', '10 1'], 4, 4);
    expect(encode(union, 4, 4)).toBe('0 4 6 1');
    expect(Array.from(decodeUnionRuns(['0 2', '1 3', '10 1'], 4, 4))).toEqual([0, 4, 10, 11]);
    expect(decodeUnion([], 4, 4).every((v) => v === 0)).toBe(true);
  });

  it('computes run intersections', () => {
    const a = decodeRuns('0 4 6 2', 4, 4); // [0,4) [10,12)
    const b = decodeRuns('2 9', 4, 4); // [2,11)
    expect(intersectionArea(a, b)).toBe(2 + 1);
    expect(intersectionArea(a, decodeRuns('-1', 4, 4))).toBe(0);
  });
});

describe('rle: malformed text', () => {
  const cases: [string, string, RegExp][] = [
    ['odd count', '5 2 2', /RLE of image img-1: odd number of values \(3\)/],
    ['negative value', '5 -2', /RLE of image img-1: negative or non-numeric value "-2" at value 2/],
    ['non-numeric value', '5 x2', /RLE of image img-1: non-numeric value "x2" at value 2/],
    ['decimal value', '5.0 2', /RLE of image img-1: non-numeric value "5.0" at value 1/],
    ['-1 mixed with values', '-1 5 2', /RLE of image img-1: "-1" \(empty mask\) mixed with 2 other values/],
    ['run past the end', '10 7', /RLE of image img-1: run 1 \(start 10, length 7\) ends past the last pixel \(15\) of a 4 x 4 mask/],
    ['start past the end', '1 1 15 0', /RLE of image img-1: run 2 starts at 17, past the last pixel \(15\) of a 4 x 4 mask/],
    ['huge value', '99999999999999999999 1', /RLE of image img-1: value "99999999999999999999" at value 1 is larger than the 4 x 4 mask \(16 pixels\)/],
  ];
  for (const [name, text, message] of cases) {
    it(`rejects ${name}`, () => {
      let caught: unknown;
      try {
        decode(text, 4, 4, 'img-1');
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(RleError);
      expect((caught as RleError).message).toMatch(message);
      expect((caught as RleError).imageId).toBe('img-1');
    });
  }

  it('names no image when no id is given', () => {
    expect(() => decode('1 2 3', 4, 4)).toThrow(/^RLE: odd number of values/);
  });

  it('validates its parameters', () => {
    expect(() => encode(new Uint8Array(3), 2, 2)).toThrow(/Expected a Uint8Array of length 4 \(2 x 2\) for mask/);
    expect(() => decode('1 2', 0, 2)).toThrow(/Expected an integer between 1 and 32768 for width but received 0/);
    expect(() => encodeRuns([1, 0] as unknown as Uint8Array, 2, 1)).toThrow(/Expected a Uint8Array for mask/);
  });
});
