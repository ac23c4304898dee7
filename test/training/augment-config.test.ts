/** Augmentation configs and sampling (TypeScript only: no native calls). */
import { describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import {
  AugmentConfigError,
  AugmentPipeline,
  affineFromPoints,
  encodePlan,
  invertAffine,
  lineKernel,
  parseTransform,
  rotationMatrix,
} from '../../src/training/augment/index.js';
import type { AffineMatrix, ImageAugmentation } from '../../src/training/augment/index.js';

describe('augmentation config', () => {
  it('fills albumentations defaults and expands scalar limits like to_tuple', () => {
    const t = parseTransform({ type: 'ShiftScaleRotate' });
    expect(t).toEqual({ type: 'ShiftScaleRotate', p: 0.5, shift_limit: [-0.0625, 0.0625], scale_limit: [-0.1, 0.1], rotate_limit: [-45, 45], border_mode: 4 });
    expect(parseTransform({ type: 'Blur' })).toMatchObject({ blur_limit: [3, 7] });
    expect(parseTransform({ type: 'CLAHE', clip_limit: 4 })).toMatchObject({ clip_limit: [1, 4], tile_grid_size: [8, 8] });
    expect(parseTransform({ type: 'GaussNoise' })).toMatchObject({ var_limit: [10, 50], mean: 0 });
    expect(parseTransform({ type: 'OneOf', transforms: [{ type: 'RandomGamma' }] })).toMatchObject({ p: 0.5, transforms: [{ gamma_limit: [80, 120] }] });
    expect(parseTransform({ type: 'Normalize' })).toMatchObject({ p: 1, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], max_pixel_value: 255 });
  });

  it('round-trips a pipeline through JSON and samples it identically', () => {
    const pipeline = AugmentPipeline.preset('first-place');
    const text = JSON.stringify(pipeline);
    const again = AugmentPipeline.fromJSON(text);
    expect(again.toJSON()).toEqual(pipeline.toJSON());
    expect(JSON.parse(JSON.stringify(again))).toEqual(JSON.parse(text));
    expect(again.sample(3, 16, 64, 64)).toEqual(pipeline.sample(3, 16, 64, 64));
    const second = AugmentPipeline.preset('second-place');
    expect(AugmentPipeline.fromJSON(JSON.stringify(second)).toJSON()).toEqual(second.toJSON());
  });

  it("reads albumentations' A.to_dict() output", () => {
    const serialised = {
      __version__: '0.3.0',
      transform: {
        __class_fullname__: 'albumentations.core.composition.Compose',
        p: 1.0,
        transforms: [
          { __class_fullname__: 'albumentations.augmentations.transforms.HorizontalFlip', always_apply: false, p: 0.5 },
          { __class_fullname__: 'albumentations.augmentations.transforms.RandomGamma', always_apply: false, p: 0.5, gamma_limit: [80, 120], eps: 1e-7 },
        ],
        bbox_params: {},
        keypoint_params: {},
        additional_targets: {},
      },
    };
    const pipeline = AugmentPipeline.fromJSON(serialised);
    expect(pipeline.config.transforms.map((t) => t.type)).toEqual(['HorizontalFlip', 'RandomGamma']);
  });

  it('names the closest valid transform or parameter for a typo, and the path of a bad value', () => {
    expect(() => parseTransform({ type: 'HorizontalFlp' })).toThrow(/Unknown transform "HorizontalFlp" at pipeline: did you mean "HorizontalFlip"\?/);
    expect(() => parseTransform({ type: 'Compose', transforms: [{ type: 'ShiftScaleRotate', rotate_limt: 10 }] })).toThrow(
      /Unknown parameter "rotate_limt" for ShiftScaleRotate at pipeline.transforms\[0\]: did you mean "rotate_limit"\?/,
    );
    expect(() => parseTransform({ type: 'Compose', transforms: [{ type: 'RandomGamma', gamma_limit: [120, 80] }] })).toThrow(
      /Expected a \[min, max\] pair with min <= max for pipeline.transforms\[0\].gamma_limit/,
    );
    expect(() => parseTransform({ type: 'HorizontalFlip', p: 2 })).toThrow(AugmentConfigError);
    expect(() => parseTransform({ type: 'ShiftScaleRotate', interpolation: 0 })).toThrow(/interpolation = 0 is not supported/);
    expect(() => AugmentPipeline.preset('first_place' as 'first-place')).toThrow(/did you mean "first-place"/);
    expect(() => new AugmentPipeline({ type: 'OneOf', p: 1, transforms: [{ type: 'Normalize' }] })).toThrow(/Normalize must always apply/);
    expect(() => new AugmentPipeline([{ type: 'RandomSizedCrop', min_max_height: [10, 20], height: 32, width: 32 }]).sample(1, 1, 64, 64)).toThrow(/differs from the batch size 64x64/);
  });
});

describe('sampling', () => {
  it('is deterministic per seed and differs between seeds', () => {
    const pipeline = AugmentPipeline.preset('first-place');
    expect(pipeline.sample(new Random(7), 8, 128, 128)).toEqual(pipeline.sample(new Random(7), 8, 128, 128));
    expect(pipeline.sample(new Random(7), 8, 128, 128)).not.toEqual(pipeline.sample(new Random(8), 8, 128, 128));
  });

  it("applies transforms at their probabilities and OneOf's children by weight", () => {
    const pipeline = AugmentPipeline.preset('first-place');
    const plan = pipeline.sample(11, 4000, 64, 64);
    const rate = (pred: (r: ImageAugmentation) => boolean): number => plan.filter(pred).length / plan.length;
    expect(rate((r) => r.applied.includes('HorizontalFlip'))).toBeCloseTo(0.5, 1);
    expect(rate((r) => r.applied.includes('ShiftScaleRotate'))).toBeCloseTo(0.5, 1);
    const distortion = rate((r) => r.applied.some((a) => ['ElasticTransform', 'GridDistortion', 'OpticalDistortion'].includes(a)));
    expect(Math.abs(distortion - 0.3)).toBeLessThan(0.03);
    const elastic = rate((r) => r.applied.includes('ElasticTransform'));
    expect(Math.abs(elastic - 0.1)).toBeLessThan(0.02);
    // Never two of one OneOf.
    expect(plan.every((r) => r.applied.filter((a) => ['RandomContrast', 'RandomGamma', 'RandomBrightness'].includes(a)).length <= 1)).toBe(true);
    // Drawn parameters stay within their limits.
    for (const r of plan) {
      for (const g of r.geometry) {
        if (g.kind === 'affine' && g.transform === 'ShiftScaleRotate') {
          expect(Math.abs(g.params.angle as number)).toBeLessThanOrEqual(45);
          expect(Math.abs((g.params.scale as number) - 1)).toBeLessThanOrEqual(0.1);
          expect(Math.abs(g.params.dx as number)).toBeLessThanOrEqual(0.0625);
        }
      }
      for (const s of r.photometric) if (s.kind === 'pointwise' && s.transform === 'RandomGamma') expect(s.gamma >= 0.8 && s.gamma <= 1.2).toBe(true);
    }
  });

  it('builds affine maps like OpenCV', () => {
    // cv2.getRotationMatrix2D((10, 20), 30, 1.5)
    const m = rotationMatrix(10, 20, 30, 1.5);
    const c = 1.5 * Math.cos(Math.PI / 6);
    const s = 1.5 * Math.sin(Math.PI / 6);
    expect(m).toEqual([c, s, (1 - c) * 10 - s * 20, -s, c, s * 10 + (1 - c) * 20]);
    const inverse = invertAffine(m);
    const apply = (a: AffineMatrix, x: number, y: number): [number, number] => [a[0] * x + a[1] * y + a[2], a[3] * x + a[4] * y + a[5]];
    const [u, v] = apply(m, 3, 4);
    const [x, y] = apply(inverse, u, v);
    expect(x).toBeCloseTo(3, 12);
    expect(y).toBeCloseTo(4, 12);
    const src: [number, number][] = [[0, 0], [10, 0], [0, 10]];
    const fit = affineFromPoints(src, src.map(([a, b]) => apply(m, a, b)));
    fit.forEach((value, i) => expect(value).toBeCloseTo(m[i] as number, 10));
  });

  it('rasterises motion-blur lines into normalised kernels', () => {
    expect(lineKernel(3, [0, 1, 2, 1])).toEqual([0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 0, 0, 0]);
    expect(lineKernel(3, [0, 0, 2, 2])).toEqual([1 / 3, 0, 0, 0, 1 / 3, 0, 0, 0, 1 / 3]);
    const k = lineKernel(7, [0, 1, 6, 4]);
    expect(k.filter((v) => v > 0).length).toBe(7);
    expect(k.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  it('encodes records in the layout the native side decodes', () => {
    const plan: ImageAugmentation[] = [
      { applied: ['HorizontalFlip'], geometry: [{ kind: 'affine', transform: 'HorizontalFlip', matrix: [-1, 0, 7, 0, 1, 0], border: 4, params: {} }], photometric: [] },
      { applied: ['RandomGamma'], geometry: [], photometric: [{ kind: 'pointwise', transform: 'RandomGamma', alpha: 1, beta: 0, brightnessByMax: true, gamma: 0.9 }] },
    ];
    expect(Array.from(encodePlan(plan))).toEqual([1, 2, 1, 0, 0, 4, 6, -1, 0, 7, 0, 1, 0, 0, 1, 0, 4, 1, 0, 1, 0.9]);
  });
});
