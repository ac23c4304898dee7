// Augmentation bench: images/s of the fused batch augmentation (all geometric steps of an image in
// one sampling grid and one grid_sample, then the photometric steps) against the same records
// applied one transform at a time (one native call, hence one grid_sample, per transform, float
// intermediate images), measured in the same run on the same batch.
import { Tensor } from '../dist/index.js';
import { Random } from '../dist/core/random.js';
import { AugmentPipeline } from '../dist/training/augment/index.js';

async function timeIt(fn, minMs) {
  await fn();
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    let n = 0;
    const start = process.hrtime.bigint();
    let elapsed = 0;
    while (elapsed < minMs) {
      await fn();
      n++;
      elapsed = Number(process.hrtime.bigint() - start) / 1e6;
    }
    best = Math.min(best, elapsed / 1000 / n);
  }
  return best;
}

/** Every geometric transform of the first place's pipeline, always applied, plus a photometric one. */
const HEAVY = [
  { type: 'HorizontalFlip', p: 1 },
  { type: 'RandomGamma', p: 1, gamma_limit: [80, 120] },
  { type: 'GridDistortion', p: 1 },
  { type: 'OpticalDistortion', p: 1, distort_limit: 0.3, shift_limit: 0.5 },
  { type: 'ShiftScaleRotate', p: 1, shift_limit: 0.0625, scale_limit: 0.1, rotate_limit: 45 },
];

export async function run({ quick, log }) {
  const size = 512;
  const batch = quick ? 4 : 8;
  const minMs = quick ? 500 : 1500;
  const rng = new Random(1);
  const pixels = new Uint8Array(batch * size * size).map(() => rng.int(0, 255));
  const masks = pixels.map((v) => (v > 200 ? 255 : 0));
  const images = Tensor.from(pixels, [batch, 1, size, size]);
  const maskTensor = Tensor.from(masks, [batch, 1, size, size]);
  const entries = [];
  for (const [name, config] of [
    ['first-place preset', AugmentPipeline.preset('first-place').toJSON()],
    ['flip + gamma + grid + optical + shift-scale-rotate', HEAVY],
  ]) {
    const pipeline = new AugmentPipeline(config);
    const raw = new AugmentPipeline([]);
    const plan = pipeline.sample(7, batch, size, size);
    const fused = await timeIt(async () => {
      const out = await pipeline.apply(images, maskTensor, plan);
      out.images.dispose();
      out.masks?.dispose();
    }, minMs);
    // One call per step: step k of every image that has one, the others unchanged.
    const steps = Math.max(...plan.map((r) => r.geometry.length + r.photometric.length));
    const stepPlans = Array.from({ length: steps }, (_, k) =>
      plan.map((r) => {
        const all = [...r.geometry.map((g) => ['g', g]), ...r.photometric.map((p) => ['p', p])];
        const entry = all[k];
        return { applied: [], geometry: entry?.[0] === 'g' ? [entry[1]] : [], photometric: entry?.[0] === 'p' ? [entry[1]] : [] };
      }),
    );
    const sequential = await timeIt(async () => {
      let x = images;
      let m = maskTensor;
      for (const p of stepPlans) {
        const out = await raw.apply(x, m, p);
        if (x !== images) x.dispose();
        if (m !== maskTensor) m.dispose();
        x = out.images;
        m = out.masks;
      }
      const final = await pipeline.apply(x, m, plan.map(() => ({ applied: [], geometry: [], photometric: [] })));
      if (x !== images) x.dispose();
      if (m !== maskTensor) m.dispose();
      final.images.dispose();
      final.masks?.dispose();
    }, minMs);
    const ips = (s) => batch / s;
    log(`${name} @${size}: fused ${ips(fused).toFixed(1)} images/s, one transform per pass ${ips(sequential).toFixed(1)} images/s`);
    entries.push({
      group: 'augment',
      name: `${name}, batch ${batch} @ ${size} (image + mask)`,
      unit: 'images/s',
      value: ips(fused),
      baseline: { name: 'same records, one resampling per transform', value: ips(sequential) },
      higherIsBetter: true,
      notes: 'CPU; every random parameter drawn in TS beforehand, identical in both',
    });
  }
  images.dispose();
  maskTensor.dispose();
  return entries;
}
