/** `pneumo-native folds`: stratified cross-validation folds (`fname,fold,exist_labels`). */
import { existsSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { ALWAYS_TRAIN_FOLD, ALWAYS_TRAIN_LABEL, FoldSplit, makeFolds, writeFolds } from '../../data/folds.js';
import type { FoldCount } from '../../data/folds.js';
import { iterateRows, readTrainLabels } from '../../data/labels.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface FoldsArgs extends JsonOption {
  labels: string;
  k: number;
  seed: number;
  out: string;
  alwaysTrain?: string;
}

/** What `folds` reports. */
export interface FoldsResult {
  out: string;
  k: number;
  seed: number;
  images: number;
  positive: number;
  folds: FoldCount[];
  alwaysTrain: number;
}

/**
 * Resolves `--always-train`: a label file or sample submission (its ids; its labels are used for
 * ids missing from `--labels`), or a comma-separated list of ids.
 */
async function resolveAlwaysTrain(value: string, labels: Map<string, string[]>): Promise<string[]> {
  if (!existsSync(value)) {
    const ids = value.split(/[\s,]+/).filter(Boolean);
    if (ids.length === 0) throw new CliError('--always-train: expected a CSV file or comma-separated ids', 2);
    const unknown = ids.filter((id) => !labels.has(id));
    if (unknown.length > 0) throw new CliError(`--always-train: ${unknown.length} id(s) not in --labels and ${JSON.stringify(value)} is not a file: ${unknown.slice(0, 5).join(', ')}`);
    return ids;
  }
  const ids: string[] = [];
  const own = new Map<string, string[]>();
  let hasRle = false;
  for await (const row of iterateRows(value, { requireRle: false })) {
    if (!own.has(row.id)) {
      own.set(row.id, []);
      ids.push(row.id);
    }
    if (row.rle !== '') {
      hasRle = true;
      if (row.rle !== '-1') own.get(row.id)?.push(row.rle);
    }
  }
  for (const id of ids) {
    if (labels.has(id)) continue;
    if (!hasRle) throw new CliError(`--always-train: image ${id} is not in --labels and ${value} has no EncodedPixels to label it`);
    labels.set(id, own.get(id) ?? []);
  }
  return ids;
}

function render(r: FoldsResult): string {
  const rows: (string | number)[][] = [['fold', 'images', 'positive', 'negative']];
  for (const c of r.folds) rows.push([c.fold === ALWAYS_TRAIN_FOLD ? `${ALWAYS_TRAIN_LABEL} (always train)` : c.fold, c.images, c.positive, c.negative]);
  return `Wrote ${r.out}: ${r.images} images (${r.positive} with pneumothorax), ${r.k} folds, seed ${r.seed}\n${formatTable(rows)}`;
}

export const foldsCommand: CommandModule<object, FoldsArgs> = {
  command: 'folds',
  describe: 'Split labelled images into k folds stratified by pneumothorax (fname,fold,exist_labels)',
  builder: (y) =>
    y
      .options({
        labels: { type: 'string', demandOption: true, describe: 'Train labels CSV (stage-1 train-rle.csv or stage_2_train.csv)' },
        k: { type: 'number', default: 5, describe: 'Number of folds' },
        seed: { type: 'number', default: 42, describe: 'Shuffle seed (same seed, same folds)' },
        out: { type: 'string', demandOption: true, describe: 'Folds CSV to write' },
        'always-train': {
          type: 'string',
          describe: `Images always trained on, never validated (the stage-2 scheme), written with fold "${ALWAYS_TRAIN_LABEL}": a CSV with an ImageId column, or comma-separated ids`,
        },
        ...jsonOption,
      })
      .check((argv) => {
        if (!Number.isInteger(argv.k) || argv.k < 2) throw new CliError(`--k must be an integer >= 2 (got ${argv.k})`, 2);
        if (!Number.isSafeInteger(argv.seed)) throw new CliError(`--seed must be an integer (got ${argv.seed})`, 2);
        return true;
      }),
  handler: async (argv) => {
    const labels = await readTrainLabels(argv.labels);
    const alwaysTrain = argv.alwaysTrain === undefined ? [] : await resolveAlwaysTrain(argv.alwaysTrain, labels);
    let rows;
    try {
      rows = makeFolds(labels, { k: argv.k, seed: argv.seed, alwaysTrain });
    } catch (err) {
      if (err instanceof RangeError) throw new CliError(`${argv.labels}: ${err.message}`);
      throw err;
    }
    await writeFolds(argv.out, rows);
    const split = new FoldSplit(rows);
    const result: FoldsResult = {
      out: argv.out,
      k: argv.k,
      seed: argv.seed,
      images: rows.length,
      positive: rows.filter((r) => r.existLabels === 1).length,
      folds: split.counts(),
      alwaysTrain: alwaysTrain.length,
    };
    emitResult(argv, result, render);
  },
};
