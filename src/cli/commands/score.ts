/** `pneumo-native score`: mean Dice of a submission against truth labels (SPEC section 3). */
import type { CommandModule } from 'yargs';
import { LabelFileError, readTrainLabels } from '../../data/labels.js';
import { evaluate } from '../../data/metrics.js';
import type { DiceReport } from '../../data/metrics.js';
import { RleError, decodeUnionRuns } from '../../data/rle.js';
import type { Runs } from '../../data/rle.js';
import { CliError, emitResult, formatTable, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';

interface ScoreArgs extends JsonOption {
  truth: string;
  pred: string;
  size: number;
  'union-repeated': boolean;
}

/** Reads a label file or submission into runs per image (several rows per image are unioned). */
async function readRuns(path: string, size: number, repeatedIds: 'union' | 'error' = 'union'): Promise<Map<string, Runs>> {
  let labels: Map<string, string[]>;
  try {
    labels = await readTrainLabels(path, { repeatedIds });
  } catch (err) {
    if (err instanceof LabelFileError) throw new CliError(err.message);
    throw err;
  }
  const runs = new Map<string, Runs>();
  for (const [id, rows] of labels) {
    try {
      runs.set(id, decodeUnionRuns(rows, size, size, id));
    } catch (err) {
      if (err instanceof RleError) throw new CliError(`${path}: ${err.message}`);
      throw err;
    }
  }
  return runs;
}

function formatDice(value: number | null): string {
  return value === null ? '-' : value.toFixed(4);
}

function render(r: DiceReport): string {
  const table = formatTable([
    ['truth', 'images', 'mean Dice'],
    ['empty', r.empty.count, formatDice(r.empty.meanDice)],
    ['non-empty', r.nonEmpty.count, formatDice(r.nonEmpty.meanDice)],
    ['all', r.images, formatDice(r.meanDice)],
  ]);
  const partial = r.missing.length + r.extra.length > 0 ? ' (images in both files only)' : '';
  return `Mean Dice ${formatDice(r.meanDice)} over ${r.images} images${partial}\n${table}`;
}

function describeIds(ids: string[], limit: number): string {
  const shown = ids.slice(0, limit).map((id) => `  ${id}`);
  if (ids.length > limit) shown.push(`  ... and ${ids.length - limit} more (--json lists all)`);
  return shown.join('\n');
}

export const scoreCommand: CommandModule<object, ScoreArgs> = {
  command: 'score',
  describe: 'Score a submission: mean Dice, split into images with empty and non-empty truth',
  builder: (y) =>
    y
      .options({
        truth: { type: 'string', demandOption: true, describe: 'Truth labels CSV (train-label layout; several rows per image are unioned)' },
        pred: { type: 'string', demandOption: true, describe: 'Submission CSV (ImageId,EncodedPixels)' },
        size: { type: 'number', default: 1024, describe: 'Mask width and height the RLE refers to' },
        'union-repeated': { type: 'boolean', default: false, describe: 'Union the rows of an ImageId repeated in --pred (default: a repeated id is an error naming its lines)' },
        ...jsonOption,
      })
      .check((argv) => {
        if (!Number.isInteger(argv.size) || argv.size < 1) throw new CliError(`--size must be a positive integer (got ${argv.size})`, 2);
        return true;
      }),
  handler: async (argv) => {
    const [truth, pred] = await Promise.all([readRuns(argv.truth, argv.size), readRuns(argv.pred, argv.size, argv['union-repeated'] ? 'union' : 'error')]);
    const report = evaluate(truth, pred, { width: argv.size, height: argv.size });
    emitResult(argv, report, render);
    if (report.missing.length > 0 || report.extra.length > 0) {
      if (report.missing.length > 0) logLine(`pneumo-native: ${argv.pred} is missing ${report.missing.length} image(s) of ${argv.truth}:\n${describeIds(report.missing, 20)}`);
      if (report.extra.length > 0) logLine(`pneumo-native: ${argv.pred} has ${report.extra.length} image(s) not in ${argv.truth}:\n${describeIds(report.extra, 20)}`);
      process.exitCode = 1;
    }
  },
};
