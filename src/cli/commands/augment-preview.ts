/** `pneumo-native augment-preview`: a PNG grid of augmented images with their masks, to check a pipeline by eye. */
import type { CommandModule } from 'yargs';
import { AugmentPipeline } from '../../training/augment/pipeline.js';
import { AUGMENT_PRESETS } from '../../training/augment/presets.js';
import type { AugmentPreset } from '../../training/augment/presets.js';
import { readPipelineFile, writeAugmentPreview } from '../../training/preview.js';
import type { AugmentPreviewReport } from '../../training/preview.js';
import { CliError, emitResult, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface AugmentPreviewArgs extends JsonOption {
  images: string;
  masks?: string;
  labels?: string;
  labelSize?: number;
  config?: string;
  preset?: string;
  n: number;
  size: number;
  seed: number;
  out: string;
  columns?: number;
  device: string;
  maskInterpolation?: 'nearest' | 'bilinear';
}

function render(r: AugmentPreviewReport): string {
  const lines = [`Wrote ${r.out} (${r.width}x${r.height}, ${r.ids.length} images, original | augmented)`];
  r.ids.forEach((id, i) => lines.push(`  ${id}: ${r.plan[i]?.applied.join(', ') || '(unchanged)'}`));
  return lines.join('\n');
}

export const augmentPreviewCommand: CommandModule<object, AugmentPreviewArgs> = {
  command: 'augment-preview',
  describe: 'Write a PNG grid of images beside their augmented versions, masks outlined',
  builder: (y) =>
    y
      .options({
        images: { type: 'string', demandOption: true, describe: 'Prepared train/ PNGs, or a DICOM tree' },
        masks: { type: 'string', describe: 'Prepared mask/ PNGs (same ids)' },
        labels: { type: 'string', describe: 'Train label CSV (RLE), instead of --masks (e.g. for DICOMs)' },
        'label-size': { type: 'number', default: 1024, describe: 'Mask size the RLE refers to' },
        config: { type: 'string', describe: 'Pipeline JSON (albumentations vocabulary; A.to_dict() output accepted)' },
        preset: { type: 'string', describe: `Shipped pipeline: ${AUGMENT_PRESETS.join(', ')}` },
        n: { type: 'number', default: 16, describe: 'Images in the grid' },
        size: { type: 'number', default: 256, describe: 'Image size (square)' },
        seed: { type: 'number', default: 0, describe: 'Seed for the image choice and the augmentation' },
        out: { type: 'string', demandOption: true, describe: 'Output PNG' },
        columns: { type: 'number', describe: 'Image pairs per row (default about square)' },
        device: { type: 'string', default: 'cpu', describe: 'Torch device for the augmentation' },
        'mask-interpolation': { choices: ['nearest', 'bilinear'] as const, default: 'nearest' as const, describe: 'Mask resampling' },
        ...jsonOption,
      })
      .check((argv) => {
        if (argv.config === undefined && argv.preset === undefined) throw new CliError('give --config FILE or --preset NAME', 2);
        if (argv.config !== undefined && argv.preset !== undefined) throw new CliError('give either --config or --preset, not both', 2);
        if (!Number.isInteger(argv.n) || argv.n < 1) throw new CliError(`--n must be a positive integer (got ${argv.n})`, 2);
        if (!Number.isInteger(argv.size) || argv.size < 8) throw new CliError(`--size must be an integer >= 8 (got ${argv.size})`, 2);
        if (!Number.isSafeInteger(argv.seed)) throw new CliError(`--seed must be an integer (got ${argv.seed})`, 2);
        if (argv.masks !== undefined && argv.labels !== undefined) throw new CliError('give either --masks or --labels, not both', 2);
        return true;
      }),
  handler: async (argv) => {
    let pipeline: AugmentPipeline;
    try {
      pipeline = argv.preset !== undefined ? AugmentPipeline.preset(argv.preset as AugmentPreset) : AugmentPipeline.fromJSON(await readPipelineFile(argv.config as string));
    } catch (err) {
      throw new CliError(`${argv.config ?? '--preset'}: ${(err as Error).message}`, 2);
    }
    const options: Parameters<typeof writeAugmentPreview>[0] = {
      images: argv.images,
      labelSize: argv.labelSize ?? 1024,
      n: argv.n,
      size: argv.size,
      seed: argv.seed,
      out: argv.out,
      pipeline,
      device: argv.device,
      maskInterpolation: argv.maskInterpolation ?? 'nearest',
    };
    if (argv.masks !== undefined) options.masks = argv.masks;
    if (argv.labels !== undefined) options.labels = argv.labels;
    if (argv.columns !== undefined) options.columns = argv.columns;
    const report = await writeAugmentPreview(options);
    emitResult(argv, report, render);
  },
};
