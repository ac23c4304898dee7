/** `pneumo-native swa`: average checkpoints' weights (top-K averaging, SWA) and recompute BatchNorm statistics. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { listImages } from '../../inference/infer.js';
import { averageCheckpoints } from '../../inference/swa.js';
import type { SwaResult } from '../../inference/swa.js';
import { ProgressBar } from '../progress.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface SwaArgs extends JsonOption {
  checkpoints: string[];
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
        checkpoints: { type: 'string', array: true, demandOption: true, describe: 'Checkpoints of one architecture (e.g. the top-K epochs of a fold)' },
        weights: { type: 'string', describe: 'Comma-separated weights, one per checkpoint (default equal)' },
        data: { type: 'string', describe: 'Training images for the BatchNorm pass: a `prepare` output (its train/) or a folder of images' },
        'max-images': { type: 'number', describe: 'At most this many images (a seeded random subset)' },
        'batch-size': { type: 'number', default: 8, describe: 'Images per BatchNorm batch (at least 2)' },
        size: { type: 'number', describe: "Input side (default: the first checkpoint's training image size)" },
        seed: { type: 'number', default: 42, describe: 'Seed of the image subset' },
        out: { type: 'string', demandOption: true, describe: 'The averaged checkpoint to write' },
        quiet: { type: 'boolean', default: false, describe: 'No progress on stderr' },
        ...jsonOption,
      })
      .check((argv) => {
        if (!Number.isInteger(argv['batch-size']) || argv['batch-size'] < 2) throw new CliError(`--batch-size must be an integer >= 2 (got ${argv['batch-size']})`, 2);
        const m = argv['max-images'];
        if (m !== undefined && (!Number.isInteger(m) || m < 2)) throw new CliError(`--max-images must be an integer >= 2 (got ${m})`, 2);
        return true;
      }),
  handler: async (argv) => {
    for (const c of argv.checkpoints) if (!existsSync(c)) throw new CliError(`--checkpoints ${c} does not exist`);
    let weights: number[] | undefined;
    if (argv.weights !== undefined) {
      weights = argv.weights.split(',').map((s) => Number(s.trim()));
      if (weights.length !== argv.checkpoints.length || weights.some((w) => !Number.isFinite(w) || w < 0)) {
        throw new CliError(`--weights: expected ${argv.checkpoints.length} comma-separated numbers >= 0, one per checkpoint (got ${JSON.stringify(argv.weights)})`, 2);
      }
    }
    let images;
    if (argv.data !== undefined) {
      const dir = existsSync(join(argv.data, 'train')) ? join(argv.data, 'train') : argv.data;
      if (!existsSync(dir)) throw new CliError(`--data ${argv.data} does not exist`);
      images = await listImages(dir);
      if (images.length < 2) throw new CliError(`--data ${dir}: the BatchNorm pass needs at least 2 images (found ${images.length})`);
    }
    const bar = new ProgressBar('swa: BatchNorm pass', 0, { unit: 'images', silent: argv.quiet || images === undefined });
    let result: SwaResult;
    try {
      result = await averageCheckpoints(argv.checkpoints, argv.out, {
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
