/** `pneumo-native synth`: writes a synthetic SIIM-shaped dataset (DICOMs, labels, submission). */
import { cpus } from 'node:os';
import type { CommandModule } from 'yargs';
import { synthesize } from '../../data/synth/dataset.js';
import type { SynthReport } from '../../data/synth/dataset.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';
import { ProgressBar } from '../progress.js';

interface SynthArgs extends JsonOption {
  out: string;
  train: number;
  test: number;
  seed: number;
  size: number;
  'positive-rate': number;
  quality: number;
  workers: number;
}

function render(r: SynthReport): string {
  const table = formatTable([
    ['split', 'images', 'positive', 'regions'],
    ['train', r.train.images, r.train.positive, r.train.regions],
    ['test', r.test.images, r.test.positive, r.test.regions],
  ]);
  const files = Object.values(r.files).map((f) => `  ${f}`).join('\n');
  return `Synthetic dataset in ${r.out} (${r.parameters.size}x${r.parameters.size}, seed ${r.parameters.seed}): ${r.written} written, ${r.skipped} kept, mean DICOM ${(r.meanBytes / 1024).toFixed(0)} KB, ${r.seconds.toFixed(1)} s\n${table}\n${files}`;
}

export const synthCommand: CommandModule<object, SynthArgs> = {
  command: 'synth',
  describe: 'Write a synthetic SIIM-shaped dataset: chest X-ray DICOMs, train-rle.csv, sample submission, test labels',
  builder: (y) =>
    y
      .options({
        out: { type: 'string', demandOption: true, describe: 'Output directory (resumable: existing images are kept)' },
        train: { type: 'number', demandOption: true, describe: 'Number of training images' },
        test: { type: 'number', default: 0, describe: 'Number of test images' },
        seed: { type: 'number', default: 42, describe: 'Seed (same seed and options, byte-identical files)' },
        size: { type: 'number', default: 1024, describe: 'Image width and height in pixels' },
        'positive-rate': { type: 'number', default: 0.22, describe: 'Fraction of images with pneumothorax' },
        quality: { type: 'number', default: 90, describe: 'JPEG quality of the DICOM pixel data' },
        workers: { type: 'number', default: cpus().length, defaultDescription: 'number of cores', describe: 'Worker threads' },
        ...jsonOption,
      })
      .check((argv) => {
        const bad = (name: string, value: number, ok: boolean, what: string) => {
          if (!ok) throw new CliError(`--${name} must be ${what} (got ${value})`, 2);
        };
        bad('train', argv.train, Number.isInteger(argv.train) && argv.train >= 0, 'an integer >= 0');
        bad('test', argv.test, Number.isInteger(argv.test) && argv.test >= 0, 'an integer >= 0');
        if (argv.train + argv.test === 0) throw new CliError('--train and --test: ask for at least one image', 2);
        bad('seed', argv.seed, Number.isSafeInteger(argv.seed), 'an integer');
        bad('size', argv.size, Number.isInteger(argv.size) && argv.size >= 64 && argv.size <= 4096, 'an integer between 64 and 4096');
        bad('positive-rate', argv['positive-rate'], argv['positive-rate'] >= 0 && argv['positive-rate'] <= 1, 'between 0 and 1');
        bad('quality', argv.quality, Number.isInteger(argv.quality) && argv.quality >= 1 && argv.quality <= 100, 'an integer between 1 and 100');
        bad('workers', argv.workers, Number.isInteger(argv.workers) && argv.workers >= 0, 'an integer >= 0');
        return true;
      }),
  handler: async (argv) => {
    const bar = new ProgressBar('synth', argv.train + argv.test, { unit: 'images' });
    const report = await synthesize({
      out: argv.out,
      train: argv.train,
      test: argv.test,
      seed: argv.seed,
      size: argv.size,
      positiveRate: argv['positive-rate'],
      quality: argv.quality,
      workers: argv.workers,
      onProgress: (done, total) => bar.update(done, total),
    });
    bar.finish();
    emitResult(argv, report, render);
  },
};
