/** `pneumo-native swa`: average checkpoints' weights (top-K averaging, SWA) and recompute BatchNorm statistics. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { listImages } from '../../inference/infer.js';
import { averageCheckpoints, selectRunCheckpoints } from '../../training/checkpoint-averaging.js';
import type { SwaResult } from '../../training/checkpoint-averaging.js';
import { ProgressBar } from '../progress.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface SwaArgs extends JsonOption {
  checkpoints?: string[];
  run?: string;
  top?: number;
  epochs?: number[];
  folds?: string;
  fold?: number;
  weights?: string;
  data?: string;
  'max-images'?: number;
  'batch-size': number;
  size?: number;
  seed: number;
  out: string;
  quiet: boolean;
}

function render(r: SwaResult): string {
  return [
    `Wrote ${r.out}: the weighted average of ${r.checkpoints.length} checkpoint(s)${r.bnBatches > 0 ? `, BatchNorm statistics recomputed on ${r.bnImages} images (${r.bnBatches} batches at ${r.size}x${r.size})` : ', BatchNorm statistics averaged (no --data)'}`,
    formatTable([['checkpoint', 'weight', 'epoch', 'score'], ...r.checkpoints.map((c) => [c.path, c.weight.toFixed(4), String(c.epoch ?? '-'), typeof c.score === 'number' ? c.score.toFixed(4) : '-'])]),
  ].join('\n');
}

export const swaCommand: CommandModule<object, SwaArgs> = {
  command: 'swa',
  describe: 'Average checkpoints (weighted), then recompute BatchNorm statistics on training images',
  builder: (y) =>
    y
      .options({
        checkpoints: { type: 'string', array: true, describe: 'Checkpoints of one architecture (e.g. the top-K epochs of a fold)' },
        run: { type: 'string', describe: "A fold's training folder (<output>/<name>/part<N>/fold<k>): average its --top K epochs or the given --epochs" },
        top: { type: 'number', describe: 'With --run: the K best validated epoch checkpoints (top-K averaging)' },
        epochs: { type: 'number', array: true, describe: 'With --run: these epochs (0-based; SWA of chosen epochs, kept with checkpoints.keepEpochs)' },
        weights: { type: 'string', describe: 'Comma-separated weights, one per checkpoint (default equal)' },
        data: { type: 'string', describe: 'Training images for the BatchNorm pass: a `prepare` output (its train/) or a folder of images' },
        folds: { type: 'string', describe: "With --data and --fold: a folds file; the BatchNorm pass uses only fold K's training images (not its validation ones)" },
        fold: { type: 'number', describe: 'With --folds: the fold whose validation images are left out of the BatchNorm pass' },
        'max-images': { type: 'number', describe: 'At most this many images (a seeded random subset)' },
        'batch-size': { type: 'number', default: 8, describe: 'Images per BatchNorm batch (at least 2)' },
        size: { type: 'number', describe: "Input side (default: the first checkpoint's training image size)" },
        seed: { type: 'number', default: 42, describe: 'Seed of the image subset' },
        out: { type: 'string', demandOption: true, describe: 'The averaged checkpoint to write' },
        quiet: { type: 'boolean', default: false, describe: 'No progress on stderr' },
        ...jsonOption,
      })
      .check((argv) => {
        const sources = [argv.checkpoints !== undefined, argv.run !== undefined].filter(Boolean).length;
        if (sources !== 1) throw new CliError('give either --checkpoints or --run (with --top K or --epochs ...)', 2);
        if (argv.run !== undefined && (argv.top === undefined) === (argv.epochs === undefined)) throw new CliError('--run needs exactly one of --top K or --epochs E...', 2);
        if (argv.run === undefined && (argv.top !== undefined || argv.epochs !== undefined)) throw new CliError('--top and --epochs select from a --run folder', 2);
        if ((argv.folds === undefined) !== (argv.fold === undefined) || (argv.folds !== undefined && argv.data === undefined)) throw new CliError('--folds and --fold go together, with --data', 2);
        if (!Number.isInteger(argv['batch-size']) || argv['batch-size'] < 2) throw new CliError(`--batch-size must be an integer >= 2 (got ${argv['batch-size']})`, 2);
        const m = argv['max-images'];
        if (m !== undefined && (!Number.isInteger(m) || m < 2)) throw new CliError(`--max-images must be an integer >= 2 (got ${m})`, 2);
        return true;
      }),
  handler: async (argv) => {
    let checkpoints: string[];
    if (argv.run !== undefined) {
      try {
        checkpoints = await selectRunCheckpoints(argv.run, argv.top !== undefined ? { top: argv.top } : { epochs: argv.epochs! });
      } catch (err) {
        throw new CliError(`--run: ${(err as Error).message}`);
      }
    } else {
      checkpoints = argv.checkpoints!;
    }
    for (const c of checkpoints) if (!existsSync(c)) throw new CliError(`--checkpoints ${c} does not exist`);
    let weights: number[] | undefined;
    if (argv.weights !== undefined) {
      weights = argv.weights.split(',').map((s) => Number(s.trim()));
      if (weights.length !== checkpoints.length || weights.some((w) => !Number.isFinite(w) || w < 0)) {
        throw new CliError(`--weights: expected ${checkpoints.length} comma-separated numbers >= 0, one per checkpoint (got ${JSON.stringify(argv.weights)})`, 2);
      }
    }
    let images;
    if (argv.data !== undefined) {
      const dir = existsSync(join(argv.data, 'train')) ? join(argv.data, 'train') : argv.data;
      if (!existsSync(dir)) throw new CliError(`--data ${argv.data} does not exist`);
      images = await listImages(dir);
      if (argv.folds !== undefined) {
        const { readFolds } = await import('../../data/folds.js');
        const validation = new Set((await readFolds(argv.folds)).filter((r) => r.fold === argv.fold).map((r) => r.id));
        if (validation.size === 0) throw new CliError(`--fold ${argv.fold}: ${argv.folds} lists no image in that fold`);
        images = images.filter((im) => !validation.has(im.id));
      }
      if (images.length < 2) throw new CliError(`--data ${dir}: the BatchNorm pass needs at least 2 images (found ${images.length})`);
    }
    const bar = new ProgressBar('swa: BatchNorm pass', 0, { unit: 'images', silent: argv.quiet || images === undefined });
    let result: SwaResult;
    try {
      result = await averageCheckpoints(checkpoints, argv.out, {
        weights,
        images,
        maxImages: argv['max-images'],
        batchSize: argv['batch-size'],
        size: argv.size,
        seed: argv.seed,
        onProgress: (d, t) => bar.update(d, t),
      });
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    if (images) bar.finish();
    emitResult(argv, result, render);
  },
};
