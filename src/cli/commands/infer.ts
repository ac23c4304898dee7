/** `pneumo-native infer`: probability maps of a set of images from one or many checkpoints, to a map file. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { readFolds } from '../../data/folds.js';
import { parseWeighted } from '../../inference/blend.js';
import { inferMaps, listImages } from '../../inference/infer.js';
import type { InferImage, InferResult } from '../../inference/infer.js';
import type { MapDType } from '../../inference/maps.js';
import { ProgressBar } from '../progress.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface InferArgs extends JsonOption {
  model: string[];
  images?: string;
  prepared?: string;
  split: string;
  folds?: string;
  fold?: number;
  out: string;
  tta: boolean;
  size?: number;
  'batch-size': number;
  dtype: string;
  device: string;
  overwrite: boolean;
  'accept-damaged-jpeg': boolean;
  quiet: boolean;
}

async function resolveImages(argv: InferArgs): Promise<InferImage[]> {
  let dir: string;
  if (argv.images !== undefined) dir = argv.images;
  else {
    dir = join(argv.prepared!, argv.split);
    if (!existsSync(dir)) throw new CliError(`--prepared ${argv.prepared}: no ${argv.split}/ folder (expected the output of \`pneumo-native prepare\`)`);
  }
  if (!existsSync(dir)) throw new CliError(`--images ${dir} does not exist`);
  let images = await listImages(dir);
  if (argv.folds !== undefined) {
    const rows = await readFolds(argv.folds);
    const inFold = new Set(rows.filter((r) => r.fold === argv.fold).map((r) => r.id));
    if (inFold.size === 0) throw new CliError(`--folds ${argv.folds} has no image in fold ${argv.fold}`);
    images = images.filter((im) => inFold.has(im.id));
    const found = new Set(images.map((im) => im.id));
    const absent = [...inFold].filter((id) => !found.has(id));
    if (absent.length > 0) throw new CliError(`${absent.length} image(s) of fold ${argv.fold} are not in ${dir}: ${absent.slice(0, 5).join(', ')}${absent.length > 5 ? ', ...' : ''}`);
  }
  if (images.length === 0) throw new CliError(`no DICOM, PNG or JPEG images in ${dir}`);
  return images;
}

function render(r: InferResult): string {
  return [
    `Wrote ${r.out}: ${r.images} ${r.size}x${r.size} maps (${r.predicted} predicted now${r.predicted < r.images ? `, ${r.images - r.predicted} already there` : ''}), ${r.tta ? 'flip TTA, ' : ''}${r.imagesPerSecond.toFixed(2)} images/s${r.labels ? ', classifier probabilities stored' : ''}`,
    formatTable([['model', 'weight', 'backbone', 'fold', 'epoch'], ...r.models.map((m) => [m.path, m.weight.toFixed(4), m.backbone ?? '-', String(m.fold ?? '-'), String(m.epoch ?? '-')])]),
  ].join('\n');
}

export const inferCommand: CommandModule<object, InferArgs> = {
  command: 'infer',
  describe: 'Predict probability maps (weighted mean of checkpoints, optional flip TTA) into one map file; resumable',
  builder: (y) =>
    y
      .options({
        model: { type: 'string', array: true, demandOption: true, describe: 'Checkpoint or TorchScript export, optionally with :weight; repeat for folds x top-K x architectures' },
        images: { type: 'string', describe: 'A folder of DICOM, PNG or JPEG images (searched recursively; id = file name)' },
        prepared: { type: 'string', describe: 'A `prepare` output folder: its --split/ PNGs' },
        split: { type: 'string', default: 'test', choices: ['test', 'train'], describe: 'Which prepared split (train with --folds/--fold for out-of-fold maps)' },
        folds: { type: 'string', describe: 'Folds file (fname,fold,exist_labels): only the images of --fold' },
        fold: { type: 'number', describe: 'The fold to predict (with --folds)' },
        out: { type: 'string', demandOption: true, describe: 'Map file to write (.pnm); a partial one from an interrupted run resumes' },
        tta: { type: 'boolean', default: false, describe: 'Horizontal-flip TTA: (f(x) + flip(f(flip(x)))) / 2, one batched forward' },
        size: { type: 'number', describe: "Input side (default: the first checkpoint's training image size)" },
        'batch-size': { type: 'number', default: 4, describe: 'Images per forward' },
        dtype: { type: 'string', default: 'uint8', choices: ['uint8', 'float16'], describe: 'Stored values: uint8 = round(p * 255), or float16' },
        device: { type: 'string', default: 'cpu', describe: '"cpu", "cuda" or "cuda:N"' },
        overwrite: { type: 'boolean', default: false, describe: 'Replace an existing different map file' },
        'accept-damaged-jpeg': { type: 'boolean', default: false, describe: 'Predict truncated or corrupt JPEG data (missing rows grey) instead of stopping with an error naming the file' },
        quiet: { type: 'boolean', default: false, describe: 'No progress on stderr' },
        ...jsonOption,
      })
      .check((argv) => {
        if ((argv.images === undefined) === (argv.prepared === undefined)) throw new CliError('give --images DIR or --prepared DIR (one of them)', 2);
        if ((argv.folds === undefined) !== (argv.fold === undefined)) throw new CliError('--folds and --fold go together', 2);
        if (argv.size !== undefined && (!Number.isInteger(argv.size) || argv.size < 1)) throw new CliError(`--size must be a positive integer (got ${argv.size})`, 2);
        if (!Number.isInteger(argv['batch-size']) || argv['batch-size'] < 1) throw new CliError(`--batch-size must be a positive integer (got ${argv['batch-size']})`, 2);
        return true;
      }),
  handler: async (argv) => {
    const models = argv.model.map(parseWeighted);
    for (const m of models) {
      if (!(m.weight! >= 0)) throw new CliError(`--model ${m.path}: the weight must be >= 0`, 2);
      if (!existsSync(m.path)) throw new CliError(`--model ${m.path} does not exist`);
    }
    const images = await resolveImages(argv);
    const bar = new ProgressBar('infer', images.length, { unit: 'images', silent: argv.quiet });
    let result: InferResult;
    try {
      result = await inferMaps(models, images, argv.out, {
        size: argv.size,
        tta: argv.tta,
        batchSize: argv['batch-size'],
        dtype: argv.dtype as MapDType,
        device: argv.device,
        overwrite: argv.overwrite,
        acceptDamagedJpeg: argv['accept-damaged-jpeg'],
        onProgress: (d, t) => bar.update(d, t),
      });
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    bar.finish();
    emitResult(argv, result, render);
  },
};
