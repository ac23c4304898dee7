/** `pneumo-native thresholds`: the (top, area, bottom) triplet search on stored maps (SPEC section 4). */
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../../core/atomic-write.js';
import type { CommandModule } from 'yargs';
import { readTrainLabels } from '../../data/labels.js';
import { parseWeighted } from '../../inference/blend.js';
import { writeHeatmap } from '../../inference/heatmap.js';
import { searchThresholds } from '../../inference/search.js';
import type { ThresholdSearchResult } from '../../inference/search.js';
import { DEFAULT_TRIPLETS, assertTriplet } from '../../scoring/triplet.js';
import type { Triplet } from '../../scoring/triplet.js';
import { defaultGrid, tripletGrid } from '../../scoring/thresholds.js';
import type { TripletScore } from '../../scoring/thresholds.js';
import { ProgressBar } from '../progress.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface ThresholdsArgs extends JsonOption {
  maps: string[];
  truth: string;
  grid: string;
  tops?: string;
  areas?: string;
  bottoms?: string;
  'area-size': number;
  'truth-size': number;
  out?: string;
  heatmap?: string;
  top: number;
  quiet: boolean;
}

/** What `thresholds --json` prints (and `--out` writes). */
export interface ThresholdsReport extends ThresholdSearchResult {
  grid: string;
  out: string | null;
  heatmap: string | null;
}

function parseList(name: string, text: string): number[] {
  const values = text.split(/[\s,]+/).filter(Boolean).map(Number);
  if (values.length === 0 || values.some((v) => !Number.isFinite(v))) throw new CliError(`--${name}: expected comma-separated numbers (got ${JSON.stringify(text)})`, 2);
  return values;
}

/** Resolves `--grid` (spec | default | a JSON file of triplets) and the --tops/--areas/--bottoms product. */
async function resolveGrid(argv: ThresholdsArgs): Promise<Triplet[]> {
  if (argv.tops !== undefined || argv.areas !== undefined || argv.bottoms !== undefined) {
    if (argv.tops === undefined || argv.areas === undefined || argv.bottoms === undefined) throw new CliError('--tops, --areas and --bottoms go together (their product is the grid)', 2);
    try {
      return tripletGrid(parseList('tops', argv.tops), parseList('areas', argv.areas), parseList('bottoms', argv.bottoms));
    } catch (err) {
      throw new CliError((err as Error).message, 2);
    }
  }
  if (argv.grid === 'default') return defaultGrid();
  if (argv.grid === 'spec') return DEFAULT_TRIPLETS.map((t) => [...t] as Triplet);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(argv.grid, 'utf8'));
  } catch (err) {
    throw new CliError(`--grid: expected "default", "spec" or a JSON file of [top, area, bottom] triplets; ${argv.grid}: ${(err as Error).message}`, 2);
  }
  const list = Array.isArray(parsed) ? parsed : (parsed as { triplets?: unknown }).triplets;
  if (!Array.isArray(list) || list.length === 0) throw new CliError(`--grid ${argv.grid}: expected a non-empty array of [top, area, bottom] triplets`, 2);
  try {
    list.forEach((t, i) => assertTriplet(`triplet ${i} of ${argv.grid}`, t));
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
  return list as Triplet[];
}

const fmt = (v: number | null) => (v === null ? '-' : v.toFixed(4));

function row(s: TripletScore): (string | number)[] {
  return [s.triplet[0], s.triplet[1], s.triplet[2], fmt(s.meanDice), fmt(s.empty.meanDice), fmt(s.nonEmpty.meanDice), s.positives];
}

function render(r: ThresholdsReport, top: number): string {
  const header = ['top', 'area', 'bottom', 'mean Dice', 'empty', 'non-empty', 'predicted positive'];
  const spec = r.scores.filter((s) => DEFAULT_TRIPLETS.some((t) => t.join() === s.triplet.join()));
  const ranked = [...r.scores].sort((a, b) => (b.meanDice ?? -1) - (a.meanDice ?? -1)).slice(0, top);
  const lines = [
    `${r.images} images (${r.nonEmptyImages} with pneumothorax), ${r.height}x${r.width} maps, ${r.scores.length} triplets, areas at ${r.areaSize}`,
  ];
  if (spec.length > 0) lines.push('', "The first place's triplets:", formatTable([header, ...spec.map(row)]));
  lines.push('', `The best ${ranked.length} of the grid:`, formatTable([header, ...ranked.map(row)]));
  const b = r.best;
  lines.push(
    '',
    `Best: top ${b.triplet[0]}, area ${b.triplet[1]}, bottom ${b.triplet[2]}: mean Dice ${fmt(b.meanDice)} (empty ${fmt(b.empty.meanDice)}, non-empty ${fmt(b.nonEmpty.meanDice)}); all-empty baseline ${r.emptyBaseline.toFixed(4)}`,
  );
  if (r.out) lines.push(`Wrote ${r.out}`);
  if (r.heatmap) lines.push(`Wrote ${r.heatmap}`);
  return lines.join('\n');
}

export const thresholdsCommand: CommandModule<object, ThresholdsArgs> = {
  command: 'thresholds',
  describe: 'Search (top, area, bottom) triplets on stored maps against the truth: table, best, JSON, heatmap',
  builder: (y) =>
    y
      .options({
        maps: { type: 'string', array: true, demandOption: true, describe: 'Map files (.pnm from infer/blend): files over distinct images (e.g. one per fold of out-of-fold maps) are joined, files over the same images blended (path:weight)' },
        truth: { type: 'string', demandOption: true, describe: 'Truth labels CSV (train-rle.csv layout; every map id must be in it)' },
        grid: { type: 'string', default: 'default', describe: '"default" (the SPEC\'s 8 triplets plus a finer grid), "spec" (the 8), or a JSON file of [top, area, bottom]' },
        tops: { type: 'string', describe: 'Grid as a product: comma-separated tops (with --areas and --bottoms)' },
        areas: { type: 'string', describe: 'Comma-separated areas (pixels at --area-size)' },
        bottoms: { type: 'string', describe: 'Comma-separated bottoms' },
        'area-size': { type: 'number', default: 1024, describe: 'The side triplet areas are counted at' },
        'truth-size': { type: 'number', default: 1024, describe: 'The side the truth RLE refers to' },
        out: { type: 'string', describe: 'Write every triplet\'s scores and the best as JSON here' },
        heatmap: { type: 'string', describe: 'Draw the score over (top, area) for each bottom as a PNG here' },
        top: { type: 'number', default: 10, describe: 'Rows of the ranked table' },
        quiet: { type: 'boolean', default: false, describe: 'No progress on stderr' },
        ...jsonOption,
      })
      .check((argv) => {
        for (const k of ['area-size', 'truth-size', 'top'] as const) {
          if (!Number.isInteger(argv[k]) || argv[k] < 1) throw new CliError(`--${k} must be a positive integer (got ${argv[k]})`, 2);
        }
        return true;
      }),
  handler: async (argv) => {
    const grid = await resolveGrid(argv);
    const truth = await readTrainLabels(argv.truth);
    const bar = new ProgressBar('thresholds', 0, { unit: 'maps', silent: argv.quiet });
    let result: ThresholdSearchResult;
    try {
      result = await searchThresholds(argv.maps.map(parseWeighted), truth, {
        grid,
        areaSize: argv['area-size'],
        truthSize: argv['truth-size'],
        onProgress: (done, total) => bar.update(done, total),
      });
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    bar.finish();
    const report: ThresholdsReport = { ...result, grid: argv.grid, out: argv.out ?? null, heatmap: argv.heatmap ?? null };
    if (argv.out) await writeFileAtomic(argv.out, `${JSON.stringify(report, null, 1)}\n`);
    if (argv.heatmap) await writeHeatmap(argv.heatmap, result.scores, `Mean Dice by triplet (${result.images} images)`);
    emitResult(argv, report, (r) => render(r, argv.top));
  },
};
