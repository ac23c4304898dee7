/** `pneumo-native store`: a prepared PNG folder -> one image store per split (no decoding while training). */
import type { CommandModule } from 'yargs';
import { convertToStore, type ConvertReport } from '../../data/image-store.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';
import { ProgressBar } from '../progress.js';

interface StoreArgs extends JsonOption {
  data: string;
  split: string[];
  out?: string;
  overwrite: boolean;
}

function render(reports: ConvertReport[]): string {
  return [
    'Image stores written:',
    formatTable([['split', 'store', 'size', 'images', 'written', 'skipped', 'seconds'], ...reports.map((r) => [r.split, r.out, r.size, r.count, r.written, r.skipped, r.seconds.toFixed(1)])]),
  ].join('\n');
}

/** Converts the splits of a prepared folder; shared with `prepare --store`. */
export async function convertSplits(data: string, splits: ('train' | 'test')[], options: { out?: string; overwrite?: boolean } = {}): Promise<ConvertReport[]> {
  const reports: ConvertReport[] = [];
  for (const split of splits) {
    let bar: ProgressBar | undefined;
    try {
      reports.push(
        await convertToStore({
          dir: data,
          split,
          ...(options.out !== undefined ? { out: options.out } : {}),
          overwrite: options.overwrite === true,
          onProgress: (done, total) => {
            bar ??= new ProgressBar(`store ${split}`, total, { unit: 'images' });
            bar.update(done, total);
          },
        }),
      );
    } finally {
      bar?.finish();
    }
  }
  return reports;
}

export const storeCommand: CommandModule<object, StoreArgs> = {
  command: 'store',
  describe: 'Convert a prepared folder (train/ + mask/, test/ PNGs) to image stores (train.pnimg, test.pnimg) that training reads with no decoding; resumable',
  builder: (y) =>
    y
      .options({
        data: { type: 'string', demandOption: true, describe: 'A prepare folder' },
        split: { type: 'string', array: true, default: ['train'], describe: 'Splits to convert: train (images and masks), test (images)' },
        out: { type: 'string', describe: 'Output store (one split only; default <data>/<split>.pnimg, which training finds by itself)' },
        overwrite: { type: 'boolean', default: false, describe: 'Start over when the store holds other images or is damaged' },
        ...jsonOption,
      })
      .check((argv) => {
        for (const s of argv.split) if (s !== 'train' && s !== 'test') throw new CliError(`--split: expected train or test but got ${JSON.stringify(s)}`, 2);
        if (argv.out !== undefined && argv.split.length !== 1) throw new CliError('--out names one store: give one --split with it', 2);
        return true;
      }),
  handler: async (argv) => {
    const reports = await convertSplits(argv.data, [...new Set(argv.split)] as ('train' | 'test')[], { ...(argv.out !== undefined ? { out: argv.out } : {}), overwrite: argv.overwrite });
    emitResult(argv, reports, render);
  },
};
