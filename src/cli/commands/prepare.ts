/** `pneumo-native prepare`: SIIM DICOMs + train labels -> train/, mask/, test/ PNGs at one size. */
import { availableParallelism } from 'node:os';
import type { CommandModule } from 'yargs';
import { LabelFileError } from '../../data/labels.js';
import { prepare, type PrepareReport } from '../../data/prepare.js';
import { CliError, emitResult, formatTable, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';
import { ProgressBar } from '../progress.js';
import { convertSplits } from './store.js';

interface PrepareArgs extends JsonOption {
  clahe?: string;
  'train-dicom'?: string;
  'test-dicom'?: string;
  labels?: string;
  out: string;
  'img-size': number;
  workers: number;
  store: boolean;
}

const LIST_LIMIT = 20;

function list(ids: string[]): string {
  const shown = ids.slice(0, LIST_LIMIT).map((id) => `  ${id}`);
  if (ids.length > LIST_LIMIT) shown.push(`  ... and ${ids.length - LIST_LIMIT} more (--json lists all)`);
  return shown.join('\n');
}

function render(r: PrepareReport): string {
  const lines = [
    `Prepared ${r.imgSize}x${r.imgSize} PNGs in ${r.out} (${r.workers} worker${r.workers === 1 ? '' : 's'}, ${r.seconds.toFixed(1)} s)`,
    formatTable([
      ['split', 'images', 'done', 'skipped', 'failed'],
      ['train', r.train.total, r.train.done, r.train.skipped, r.train.failed],
      ['test', r.test.total, r.test.done, r.test.skipped, r.test.failed],
    ]),
  ];
  if (r.unlabeled.length > 0) lines.push(`${r.unlabeled.length} training DICOM(s) have no row in the labels file and were not prepared:\n${list(r.unlabeled)}`);
  if (r.missingDicoms.length > 0) lines.push(`${r.missingDicoms.length} labelled image(s) have no training DICOM:\n${list(r.missingDicoms)}`);
  if (r.failures.length > 0) {
    lines.push(`${r.failures.length} file(s) failed:`);
    for (const f of r.failures) lines.push(`  ${f.file}: ${f.reason}`);
  }
  return lines.join('\n');
}

/** `--clahe 2,8`: clip limit and tiles per side. */
function parseClahe(text: string): { clipLimit: number; tileGrid: number } {
  const parts = text.split(',').map((x) => Number(x.trim()));
  if (parts.length !== 2 || !(parts[0]! >= 0) || !Number.isInteger(parts[1]) || parts[1]! < 1 || parts[1]! > 256) {
    throw new CliError(`--clahe: expected 'clipLimit,tiles' such as 2,8 (clip limit >= 0, 1-256 tiles per side) but got ${JSON.stringify(text)}`, 2);
  }
  return { clipLimit: parts[0]!, tileGrid: parts[1]! };
}

export const prepareCommand: CommandModule<object, PrepareArgs> = {
  command: 'prepare',
  describe: 'Decode SIIM DICOMs to train/, mask/ and test/ PNGs at one size (parallel, resumable)',
  builder: (y) =>
    y
      .options({
        'train-dicom': { type: 'string', describe: 'Training DICOM root (dicom-images-train/<study>/<series>/<ImageId>.dcm)' },
        'test-dicom': { type: 'string', describe: 'Test DICOM root (dicom-images-test)' },
        labels: { type: 'string', describe: 'Train labels CSV (train-rle.csv or stage_2_train.csv); required with --train-dicom' },
        out: { type: 'string', demandOption: true, describe: 'Output directory: train/<id>.png, mask/<id>.png, test/<id>.png' },
        'img-size': { type: 'number', demandOption: true, describe: 'Output width and height (bilinear; masks thresholded at 127 after a bilinear resize)' },
        workers: { type: 'number', default: availableParallelism(), describe: 'Worker threads (0: run in the main thread)' },
        store: { type: 'boolean', default: false, describe: 'Also write image stores (train.pnimg, test.pnimg) that training reads with no decoding (see `pneumo-native store`)' },
        clahe: { type: 'string', describe: "CLAHE preprocessing of every image, 'clipLimit,tiles' (OpenCV's createCLAHE; e.g. 2,8), as the UNet++ seed" },
        ...jsonOption,
      })
      .check((argv) => {
        if (argv['train-dicom'] === undefined && argv['test-dicom'] === undefined) throw new CliError('name --train-dicom, --test-dicom or both', 2);
        if (argv['train-dicom'] !== undefined && argv.labels === undefined) throw new CliError('--labels is required with --train-dicom', 2);
        const size = argv['img-size'];
        if (!Number.isInteger(size) || size < 1 || size > 65535) throw new CliError(`--img-size must be an integer between 1 and 65535 (got ${size})`, 2);
        if (!Number.isInteger(argv.workers) || argv.workers < 0) throw new CliError(`--workers must be a non-negative integer (got ${argv.workers})`, 2);
        if (argv.clahe !== undefined) parseClahe(argv.clahe);
        return true;
      }),
  handler: async (argv) => {
    let bar: ProgressBar | undefined;
    let report: PrepareReport;
    try {
      report = await prepare({
        trainDicom: argv['train-dicom'],
        testDicom: argv['test-dicom'],
        labels: argv.labels,
        out: argv.out,
        imgSize: argv['img-size'],
        workers: argv.workers,
        ...(argv.clahe !== undefined ? { clahe: parseClahe(argv.clahe) } : {}),
        onProgress: (finished, total) => {
          bar ??= new ProgressBar('prepare', total, { unit: 'images' });
          bar.update(finished, total);
        },
      });
    } catch (err) {
      if (err instanceof LabelFileError) throw new CliError(err.message);
      throw err;
    } finally {
      bar?.finish();
    }
    if (argv.store && report.failures.length === 0) {
      const splits = [...(argv['train-dicom'] !== undefined ? ['train' as const] : []), ...(argv['test-dicom'] !== undefined ? ['test' as const] : [])];
      const stores = await convertSplits(argv.out, splits);
      emitResult(argv, { ...report, stores }, (r) => `${render(r)}\nImage stores: ${stores.map((s) => `${s.out} (${s.count} images)`).join(', ')}`);
    } else {
      emitResult(argv, report, render);
    }
    if (argv.store && report.failures.length > 0) logLine('pneumo-native: image stores not written (some files failed); rerun prepare --store once they are fixed');
    if (report.failures.length > 0) {
      logLine(`pneumo-native: ${report.failures.length} file(s) failed to prepare (listed above); rerun to retry them, done files are skipped`);
      process.exitCode = 1;
    }
  },
};
