/** `pneumo-native submit`: stored maps to a SIIM submission CSV, checked against the sample submission. */
import { readFile } from 'node:fs/promises';
import type { CommandModule } from 'yargs';
import { readSampleSubmission, readTrainLabels } from '../../data/labels.js';
import { assertTriplet } from '../../inference/postprocess.js';
import { parseWeighted } from '../../inference/blend.js';
import { DEFAULT_SUBMIT_TRIPLET, makeSubmission, readProbabilities, readRankingProbabilities } from '../../inference/submit.js';
import type { SubmitResult } from '../../inference/submit.js';
import type { Triplet } from '../../training/config.js';
import { ProgressBar } from '../progress.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface SubmitArgs extends JsonOption {
  maps: string[];
  sample: string;
  out: string;
  triplet?: string;
  thresholds?: string;
  'min-area': number;
  'non-empty-ratio'?: number;
  classifier?: string;
  gate?: number;
  'rank-by'?: string;
  truth?: string;
  size: number;
  'area-size': number;
  quiet: boolean;
}

/** Parses "top,area,bottom". */
export function parseTriplet(text: string, name = '--triplet'): Triplet {
  const parts = text.split(',').map((s) => Number(s.trim()));
  try {
    assertTriplet(name, parts);
  } catch (err) {
    throw new CliError(`${name}: expected "top,area,bottom" such as 0.75,2000,0.3 (${(err as Error).message})`, 2);
  }
  return parts as Triplet;
}

async function tripletFromSearch(path: string): Promise<Triplet> {
  let report: { best?: { triplet?: unknown } };
  try {
    report = JSON.parse(await readFile(path, 'utf8')) as typeof report;
  } catch (err) {
    throw new CliError(`--thresholds: cannot read ${path} (${(err as Error).message})`, 2);
  }
  const t = report.best?.triplet;
  try {
    assertTriplet(`the best triplet of ${path}`, t);
  } catch {
    throw new CliError(`--thresholds: ${path} has no best triplet (expected the JSON that \`pneumo-native thresholds --out\` writes)`, 2);
  }
  return t as Triplet;
}

const fmt = (v: number | null) => (v === null ? '-' : v.toFixed(4));

function render(r: SubmitResult): string {
  const lines = [
    `Wrote ${r.out}: ${r.images} images, ${r.positives} with a mask (${r.size}x${r.size} masks from ${r.mapSize[0]}x${r.mapSize[1]} maps)`,
    `triplet (${r.triplet.join(', ')}): ${r.tripletPositives} positive${r.minArea > 0 ? `; regions under ${r.minArea} px removed: ${r.regionsRemoved}` : ''}${r.gatedOut > 0 ? `; gated out by the classifier: ${r.gatedOut}` : ''}${r.ratioRemoved > 0 ? `; removed by non_empty_ratio: ${r.ratioRemoved}` : ''}`,
  ];
  if (r.score) {
    const s = r.score;
    lines.push(
      '',
      formatTable([
        ['truth', 'images', 'mean Dice'],
        ['empty', s.empty.count, fmt(s.empty.meanDice)],
        ['non-empty', s.nonEmpty.count, fmt(s.nonEmpty.meanDice)],
        ['all', s.images, fmt(s.meanDice)],
        ['all-empty baseline', s.images, s.emptyBaseline.toFixed(4)],
      ]),
    );
  }
  return lines.join('\n');
}

export const submitCommand: CommandModule<object, SubmitArgs> = {
  command: 'submit',
  describe: 'Write the submission CSV from stored maps: triplet, region filter, classifier gate, non_empty_ratio, RLE at 1024',
  builder: (y) =>
    y
      .options({
        maps: { type: 'string', array: true, demandOption: true, describe: 'Map files (.pnm) covering exactly the sample submission\'s images: files over distinct images are joined, files over the same images blended (path:weight)' },
        sample: { type: 'string', demandOption: true, describe: 'The sample submission (its ids and order are the submission\'s)' },
        out: { type: 'string', demandOption: true, describe: 'Submission CSV to write (atomically)' },
        triplet: { type: 'string', describe: `top,area,bottom (default ${DEFAULT_SUBMIT_TRIPLET.join(',')}, the first place's best on validation)` },
        thresholds: { type: 'string', describe: 'Take the best triplet of this `thresholds --out` JSON' },
        'min-area': { type: 'number', default: 0, describe: 'Remove connected regions under this many pixels (at --area-size), holes filled; 0 keeps all' },
        'non-empty-ratio': { type: 'number', describe: 'Keep only this fraction of images positive, ranked by predicted area (42nd place)' },
        classifier: { type: 'string', describe: 'CSV of ImageId,probability (e.g. from `stack`) for the gate; without it --gate uses the maps\' stored classifier probabilities' },
        gate: { type: 'number', describe: 'Keep a segmentation only where the classifier probability is above this (second place: 0.65)' },
        'rank-by': { type: 'string', describe: "With --non-empty-ratio: rank images by a classifier's probabilities (its test maps from `infer`, or an ImageId,probability CSV) instead of by predicted area (42nd place)" },
        truth: { type: 'string', describe: 'Truth labels (e.g. test-rle.csv): also score the submission' },
        size: { type: 'number', default: 1024, describe: 'Mask side of the submission' },
        'area-size': { type: 'number', default: 1024, describe: 'The side areas are counted at' },
        quiet: { type: 'boolean', default: false, describe: 'No progress on stderr' },
        ...jsonOption,
      })
      .check((argv) => {
        for (const k of ['size', 'area-size'] as const) if (!Number.isInteger(argv[k]) || argv[k] < 1) throw new CliError(`--${k} must be a positive integer (got ${argv[k]})`, 2);
        if (!(argv['min-area'] >= 0)) throw new CliError(`--min-area must be >= 0 (got ${argv['min-area']})`, 2);
        const r = argv['non-empty-ratio'];
        if (r !== undefined && !(r >= 0 && r <= 1)) throw new CliError(`--non-empty-ratio must be between 0 and 1 (got ${r})`, 2);
        if (argv.gate !== undefined && !(argv.gate >= 0 && argv.gate <= 1)) throw new CliError(`--gate must be between 0 and 1 (got ${argv.gate})`, 2);
        if (argv.classifier !== undefined && argv.gate === undefined) throw new CliError('--classifier needs --gate (the threshold, e.g. 0.65)', 2);
        if (argv['rank-by'] !== undefined && r === undefined) throw new CliError('--rank-by needs --non-empty-ratio (it ranks images for it)', 2);
        if (argv.triplet !== undefined && argv.thresholds !== undefined) throw new CliError('give --triplet or --thresholds, not both', 2);
        return true;
      }),
  handler: async (argv) => {
    const triplet = argv.triplet !== undefined ? parseTriplet(argv.triplet) : argv.thresholds !== undefined ? await tripletFromSearch(argv.thresholds) : DEFAULT_SUBMIT_TRIPLET;
    const sampleIds = await readSampleSubmission(argv.sample);
    const truth = argv.truth ? await readTrainLabels(argv.truth) : undefined;
    const gate = argv.gate === undefined ? undefined : { probabilities: argv.classifier ? await readProbabilities(argv.classifier) : ('maps' as const), threshold: argv.gate };
    let rankBy: Map<string, number> | undefined;
    try {
      rankBy = argv['rank-by'] !== undefined ? await readRankingProbabilities(argv['rank-by']) : undefined;
    } catch (err) {
      throw new CliError(`--rank-by: ${(err as Error).message}`, 2);
    }
    const bar = new ProgressBar('submit', sampleIds.length, { unit: 'images', silent: argv.quiet });
    let result: SubmitResult;
    try {
      result = await makeSubmission(argv.maps.map(parseWeighted), sampleIds, argv.out, {
        triplet,
        minArea: argv['min-area'],
        nonEmptyRatio: argv['non-empty-ratio'],
        gate,
        ...(rankBy ? { rankBy } : {}),
        size: argv.size,
        areaSize: argv['area-size'],
        truth,
        onProgress: (done, total, pass) => bar.update(done, total, argv['non-empty-ratio'] !== undefined ? `pass ${pass}/2` : undefined),
      });
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    bar.finish();
    emitResult(argv, result, render);
  },
};
