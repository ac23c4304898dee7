/**
 * `AugmentPipeline`: an albumentations-style pipeline (Compose, OneOf, per-transform p) that draws
 * per-image parameters in TypeScript (`sample`) and applies a whole batch natively in one call
 * (`apply`): one sampling grid and one interpolation per image for the geometry, then the
 * photometric steps and the normalisation, on the batch's device.
 */
import { Random } from '../../core/random.js';
import type { Seed } from '../../core/random.js';
import { ensureRuntime } from '../../core/runtime.js';
import { Tensor } from '../../core/tensor.js';
import { invalidParameterError, is } from '../../core/validate.js';
import { encodePlan, samplePlan } from './plan.js';
import type { ImageAugmentation } from './plan.js';
import { AUGMENT_PRESETS, PRESETS } from './presets.js';
import type { AugmentPreset } from './presets.js';
import { closestName } from '../../core/edit-distance.js';
import { AugmentConfigError, parseTransform } from './transforms.js';
import type { ComposeConfig, NormalizeConfig, TransformConfig } from './transforms.js';

export interface AugmentApplyOptions {
  /** Masks: 'nearest' (albumentations' default) or 'bilinear' then a 0.5 threshold. */
  maskInterpolation?: 'nearest' | 'bilinear';
  /** Output channels (default: the length of Normalize's mean, else 1). */
  channels?: 1 | 3;
  /**
   * How CPU tensors are resampled: 'auto' (default) the fused per-pixel CPU kernel; 'aten' the
   * coordinate tensors and grid_sample that CUDA runs (the device path, for comparing the two).
   * Tensors on other devices always take the ATen path.
   */
  resample?: 'auto' | 'aten';
}

export interface AugmentedBatch {
  /** float32 [B, channels, H, W]: normalised when the pipeline has Normalize, else 0-255. */
  images: Tensor;
  /** float32 [B, 1, H, W] of 0/1, when masks were given. */
  masks?: Tensor;
}

/** Finds the pipeline's Normalize: at most one, applied always, not inside a OneOf. */
function findNormalize(config: TransformConfig, insideOneOf: boolean, found: NormalizeConfig[]): void {
  if (config.type === 'Normalize') {
    if (insideOneOf || config.p !== 1) throw new AugmentConfigError('Normalize must always apply (p = 1, not inside a OneOf): it defines the output scale');
    found.push(config);
  } else if (config.type === 'Compose' || config.type === 'OneOf') {
    if (config.type === 'Compose' && config.p !== 1 && config.transforms.some((t) => t.type === 'Normalize')) {
      throw new AugmentConfigError('Normalize must always apply: its Compose has p < 1');
    }
    for (const child of config.transforms) findNormalize(child, insideOneOf || config.type === 'OneOf', found);
  }
}

export class AugmentPipeline {
  /** The normalised config (every parameter explicit). */
  readonly config: ComposeConfig;
  /** The pipeline's normalisation, if any. */
  readonly normalize: NormalizeConfig | undefined;

  /** Builds a pipeline from a config (see `parseTransform` for the accepted forms). */
  constructor(config: unknown) {
    const parsed = parseTransform(config);
    this.config = parsed.type === 'Compose' ? parsed : { type: 'Compose', p: 1, transforms: [parsed] };
    const found: NormalizeConfig[] = [];
    findNormalize(this.config, false, found);
    if (found.length > 1) throw new AugmentConfigError(`a pipeline may hold one Normalize, found ${found.length}`);
    this.normalize = found[0];
  }

  /** Same as the constructor: a pipeline from parsed JSON. */
  static fromJSON(json: unknown): AugmentPipeline {
    return new AugmentPipeline(typeof json === 'string' ? JSON.parse(json) : json);
  }

  /** A shipped pipeline: 'first-place', 'second-place' or 'none'. */
  static preset(name: AugmentPreset): AugmentPipeline {
    if (!is.oneOf(name, AUGMENT_PRESETS)) {
      const closest = closestName(String(name), AUGMENT_PRESETS);
      throw new AugmentConfigError(`Unknown augmentation preset ${JSON.stringify(name)}${closest ? `: did you mean "${closest}"?` : ''} (known: ${AUGMENT_PRESETS.join(', ')})`);
    }
    return new AugmentPipeline(PRESETS[name]);
  }

  /** The normalised config as plain JSON; `fromJSON(toJSON())` gives an equal pipeline. */
  toJSON(): ComposeConfig {
    return JSON.parse(JSON.stringify(this.config)) as ComposeConfig;
  }

  /** Output channels by default: Normalize's mean length (3 for ImageNet), else 1. */
  get channels(): 1 | 3 {
    return this.normalize && (this.normalize.mean.length === 3 || this.normalize.std.length === 3) ? 3 : 1;
  }

  /**
   * Draws every random parameter of `batchSize` images of `height` x `width`: one record per image,
   * plain JSON (see `ImageAugmentation`). Deterministic given the stream's state.
   */
  sample(rng: Random | Seed, batchSize: number, height: number, width: number): ImageAugmentation[] {
    return samplePlan(this.config, rng instanceof Random ? rng : new Random(rng), batchSize, height, width);
  }

  /**
   * Applies records from `sample` to a uint8 batch [B, 1, H, W] (float32 on the 0-255 scale is
   * accepted too) and its masks (uint8 or float32, nonzero inside) in one native call, on the
   * tensors' device. The inputs are not modified.
   */
  async apply(images: Tensor, masks: Tensor | undefined, plan: readonly ImageAugmentation[], options: AugmentApplyOptions = {}): Promise<AugmentedBatch> {
    if (!(images instanceof Tensor)) throw invalidParameterError('images', 'a Tensor', images);
    if (masks !== undefined && !(masks instanceof Tensor)) throw invalidParameterError('masks', 'a Tensor or undefined', masks);
    const shape = images.shape;
    if ((images.dtype !== 'uint8' && images.dtype !== 'float32') || shape.length !== 4 || shape[1] !== 1) {
      throw invalidParameterError('images', 'a uint8 (or float32, 0-255) Tensor [B, 1, H, W]', `a ${images.dtype} Tensor [${shape.join(', ')}]`);
    }
    if (masks && ((masks.dtype !== 'uint8' && masks.dtype !== 'float32') || masks.shape.join() !== shape.join())) {
      throw invalidParameterError('masks', `a uint8 or float32 Tensor [${shape.join(', ')}]`, `a ${masks.dtype} Tensor [${masks.shape.join(', ')}]`);
    }
    if (!Array.isArray(plan) || plan.length !== shape[0]) throw invalidParameterError('plan', `an array of ${shape[0]} image records`, plan);
    const maskInterpolation = options.maskInterpolation ?? 'nearest';
    if (!is.oneOf(maskInterpolation, ['nearest', 'bilinear'] as const)) throw invalidParameterError('options.maskInterpolation', '"nearest" or "bilinear"', maskInterpolation);
    if (options.resample !== undefined && options.resample !== 'auto' && options.resample !== 'aten') throw invalidParameterError('options.resample', '"auto" or "aten"', options.resample);
    const channels = options.channels ?? this.channels;
    if (channels !== 1 && channels !== 3) throw invalidParameterError('options.channels', '1 or 3', channels);
    const n = this.normalize;
    if (n && ((n.mean.length !== 1 && n.mean.length !== channels) || (n.std.length !== 1 && n.std.length !== channels))) {
      throw invalidParameterError('options.channels', `a channel count matching Normalize (${n.mean.length})`, channels);
    }
    const result = await ensureRuntime().augmentBatch(images.native, masks ? masks.native : null, encodePlan(plan), {
      maskBilinear: maskInterpolation === 'bilinear',
      atenPath: options.resample === 'aten',
      normalize: n !== undefined,
      maxPixelValue: n?.max_pixel_value ?? 255,
      mean: n?.mean ?? [0],
      std: n?.std ?? [1],
      channels,
    });
    const out: AugmentedBatch = { images: new Tensor(result.images) };
    if (result.masks) out.masks = new Tensor(result.masks);
    return out;
  }

  /** `sample` then `apply`: augments a batch with parameters drawn from `rng`. */
  async run(images: Tensor, masks: Tensor | undefined, rng: Random | Seed, options: AugmentApplyOptions = {}): Promise<AugmentedBatch & { plan: ImageAugmentation[] }> {
    const [batch, , height, width] = images.shape as [number, number, number, number];
    const plan = this.sample(rng, batch, height, width);
    return { ...(await this.apply(images, masks, plan, options)), plan };
  }
}
