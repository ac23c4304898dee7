// Deterministic training data for the data-parallel tests: global batch `step` of any size, rows
// [offset, offset + count) of it (a rank's slice), 3 x 64 x 64 images and 0/1 masks.
/** A small integer hash to floats in [0, 1). */
function hash(a, b, c) {
  let h = (a * 73856093) ^ (b * 19349663) ^ (c * 83492791);
  h = Math.imul(h ^ (h >>> 13), 0x5bd1e995);
  h ^= h >>> 15;
  return (h >>> 0) / 4294967296;
}

export function batchFor(step, offset, count) {
  const images = new Float32Array(count * 3 * 64 * 64);
  const masks = new Float32Array(count * 64 * 64);
  for (let i = 0; i < count; i++) {
    const row = offset + i;
    const cx = 16 + Math.floor(hash(step, row, 1) * 32);
    const cy = 16 + Math.floor(hash(step, row, 2) * 32);
    const r = 4 + Math.floor(hash(step, row, 3) * 8);
    const positive = (step + row) % 3 !== 0;
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        const inside = positive && (x - cx) ** 2 + (y - cy) ** 2 < r * r;
        const p = y * 64 + x;
        masks[i * 4096 + p] = inside ? 1 : 0;
        for (let c = 0; c < 3; c++) images[(i * 3 + c) * 4096 + p] = (inside ? 0.8 : -0.2) + 0.5 * (hash(row * 7 + c, p, step) - 0.5);
      }
    }
  }
  return { images, masks };
}

/**
 * The SyncBatchNorm test's engine (test/distributed/syncbn.test.ts): losses that are means over
 * images (per-image Dice), so 2 ranks x B average to what 1 process x 2B computes.
 */
export const SYNCBN_ENGINE_OPTIONS = {
  optimizer: { algorithm: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 1e-4 },
  loss: [{ kind: 'combo', weight: 1, options: { bceWeight: 3, diceWeight: 1, focalWeight: 4, perImageDice: true } }],
  gradClip: 1,
};
