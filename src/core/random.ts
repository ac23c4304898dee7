/**
 * Seeded pseudo-random numbers for everything that must be reproducible: fold assignment,
 * synthetic data, samplers and augmentation. `Math.random` is never used for these.
 *
 * The generator is xoshiro128** (32-bit state words, so it runs on plain JS integers with
 * `Math.imul`), seeded through SplitMix32 so that nearby seeds (0, 1, 2 ...) give unrelated
 * streams. `deriveSeed(seed, ...parts)` hashes a base seed with indices so that independent work
 * items (image `i` of a synthetic dataset, fold `f`) get their own stream, independent of the
 * order in which they run.
 */
import { assertInteger, assertNumber, invalidParameterError, is } from './validate.js';

/** A seed: any 32-bit-representable integer, or a string (hashed). */
export type Seed = number | string;

const TWO_POW_32 = 4294967296;

/** One SplitMix32 step: advances `state` and returns a well-mixed 32-bit value. */
function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Hashes a string to 32 bits (FNV-1a followed by a final avalanche). */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  return (h ^ (h >>> 13)) >>> 0;
}

/** Reduces a seed to 32 bits; integers beyond 32 bits keep their high bits mixed in. */
function seedToUint32(seed: Seed): number {
  if (typeof seed === 'string') return hashString(seed);
  if (!Number.isSafeInteger(seed)) throw invalidParameterError('seed', 'a safe integer or a string', seed);
  const low = seed >>> 0;
  const high = Math.floor(seed / TWO_POW_32) >>> 0;
  return (low ^ Math.imul(high, 0x9e3779b1)) >>> 0;
}

/**
 * Combines a base seed with integer parts (e.g. an image index) into a new 32-bit seed.
 * `deriveSeed(s, i)` and `deriveSeed(s, j)` give unrelated streams for i != j.
 */
export function deriveSeed(seed: Seed, ...parts: number[]): number {
  const state = { s: seedToUint32(seed) };
  let h = splitmix32(state);
  for (const part of parts) {
    if (!Number.isSafeInteger(part)) throw invalidParameterError('seed part', 'a safe integer', part);
    state.s = (h ^ seedToUint32(part)) | 0;
    h = splitmix32(state);
  }
  return h;
}

/**
 * A seeded random stream (xoshiro128**). Not cryptographic. All methods advance the stream, so
 * the same sequence of calls on the same seed gives the same results on every platform.
 */
export class Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spareNormal: number | undefined;

  /** Creates a stream from a seed (an integer or a string). */
  constructor(seed: Seed) {
    const state = { s: seedToUint32(seed) };
    this.a = splitmix32(state) | 0;
    this.b = splitmix32(state) | 0;
    this.c = splitmix32(state) | 0;
    this.d = splitmix32(state) | 0;
    // xoshiro's all-zero state is a fixed point; SplitMix32 never yields four zeros, but be safe.
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** The next 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** A float uniformly distributed in [0, 1). */
  next(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  /** A float uniformly distributed in [min, max). */
  uniform(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  /** An integer uniformly distributed in [min, max] (both inclusive), without modulo bias. */
  int(min: number, max: number): number {
    return randInt(this, min, max);
  }

  /** A normally distributed float (Box-Muller, the second value of each pair is kept). */
  normal(mean = 0, std = 1): number {
    return normal(this, mean, std);
  }

  /** True with probability `p`. */
  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  /** A uniformly chosen element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw invalidParameterError('items', 'a non-empty array', items);
    return items[randInt(this, 0, items.length - 1)] as T;
  }

  /** Shuffles `items` in place (Fisher-Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    return shuffle(items, this);
  }

  /** A new independent stream derived from this one (advances this stream by one draw). */
  fork(): Random {
    return new Random(this.nextUint32());
  }

  /** @internal Box-Muller keeps its second value here between calls. */
  takeSpareNormal(): number | undefined {
    const v = this.spareNormal;
    this.spareNormal = undefined;
    return v;
  }

  /** @internal */
  storeSpareNormal(v: number): void {
    this.spareNormal = v;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** An integer uniformly distributed in [min, max] (both inclusive) drawn from `rng`. */
export function randInt(rng: Random, min: number, max: number): number {
  assertInteger('min', min);
  assertInteger('max', max, min);
  const span = max - min + 1;
  if (span > TWO_POW_32) throw invalidParameterError('max - min + 1', 'at most 2^32', span);
  if (span === TWO_POW_32) return min + rng.nextUint32();
  // Rejection sampling: discard the top partial block of the 32-bit range.
  const limit = TWO_POW_32 - (TWO_POW_32 % span);
  for (;;) {
    const x = rng.nextUint32();
    if (x < limit) return min + (x % span);
  }
}

/** A normally distributed float with the given mean and standard deviation, drawn from `rng`. */
export function normal(rng: Random, mean = 0, std = 1): number {
  assertNumber('std', std, 0);
  const spare = rng.takeSpareNormal();
  if (spare !== undefined) return mean + std * spare;
  let u = 0;
  while (u === 0) u = rng.next();
  const v = rng.next();
  const r = Math.sqrt(-2 * Math.log(u));
  rng.storeSpareNormal(r * Math.sin(2 * Math.PI * v));
  return mean + std * r * Math.cos(2 * Math.PI * v);
}

/** Shuffles `items` in place with the Fisher-Yates algorithm and returns it. */
export function shuffle<T>(items: T[], rng: Random): T[] {
  if (!Array.isArray(items) && !is.typedArray(items)) throw invalidParameterError('items', 'an array', items);
  for (let i = items.length - 1; i > 0; i--) {
    const j = randInt(rng, 0, i);
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
  return items;
}
