/** `pneumo-native stack`: the second place's stacking model over classifier probabilities (classifier gating). */
import { writeFileAtomic } from '../../core/atomic-write.js';
import type { CommandModule } from 'yargs';
import { hasPneumothorax, readTrainLabels } from '../../data/labels.js';
import { MapReader } from '../../inference/maps.js';
import { DEFAULT_GATE, predictStacking, trainStacking } from '../../inference/stacking.js';
import { readProbabilities } from '../../inference/submit.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface StackArgs extends JsonOption {
  train: string[];
  labels: string;
  test?: string[];
  out?: string;
  'oof-out'?: string;
  'model-out'?: string;
  folds: number;
  epochs: number;
  gate: number;
  seed: number;
}

export interface StackReport {
  classifiers: number;
  trainImages: number;
  trainPositives: number;
  folds: number;
  /** Out-of-fold stacked probabilities against the labels. */
  oofAuc: number | null;
  oofAccuracyAtGate: number;
  /** The mean classifier probability's accuracy at 0.5, for comparison. */
  meanAccuracy: number;
  gate: number;
  testImages: number;
  testPositiveAtGate: number;
  out: string | null;
}

/**
 * id -> probability from a map file's stored classifier probabilities, or an `ImageId,probability`
 * CSV; comma-separated files over distinct images (one classifier's out-of-fold maps, one per fold)
 * are joined.
 */
async function readClassifier(path: string): Promise<Map<string, number>> {
  if (path.includes(',')) {
    const joined = new Map<string, number>();
    for (const part of path.split(',')) {
      for (const [id, p] of await readClassifier(part)) {
        if (joined.has(id)) throw new CliError(`${part}: image ${id} is also in another file of ${path}: comma-separated files must cover distinct images`);
        joined.set(id, p);
      }
    }
    return joined;
  }
  if (path.endsWith('.pnm')) {
    const r = await MapReader.open(path);
    try {
      const out = new Map<string, number>();
      const none: string[] = [];
      r.ids.forEach((id, i) => {
        const p = r.label(i);
        if (p === null) none.push(id);
        else out.set(id, p);
      });
      if (none.length > 0) throw new CliError(`${path}: ${none.length} map(s) hold no classifier probability (infer with models that have a classification head): ${none.slice(0, 5).join(', ')}`);
      return out;
    } finally {
      await r.close();
    }
  }
  return readProbabilities(path);
}

/** Rows of N probabilities, one per id of the first file, every file covering the same ids. */
async function readMatrix(paths: readonly string[], what: string): Promise<{ ids: string[]; probs: number[][] }> {
  const files: Map<string, number>[] = [];
  for (const p of paths) {
    try {
      files.push(await readClassifier(p));
    } catch (err) {
      throw err instanceof CliError ? err : new CliError((err as Error).message);
    }
  }
  const ids = [...files[0]!.keys()];
  files.forEach((f, k) => {
    const missing = ids.filter((id) => !f.has(id));
    if (missing.length > 0 || f.size !== ids.length) {
      throw new CliError(`${what} ${paths[k]} and ${paths[0]} cover different images (${missing.length} missing${missing.length ? `: ${missing.slice(0, 5).join(', ')}` : ''})`);
    }
  });
  return { ids, probs: ids.map((id) => files.map((f) => f.get(id)!)) };
}

function auc(scores: ArrayLike<number>, labels: readonly number[]): number | null {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let pos = 0;
  let rankSum = 0;
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]!] === scores[order[i]!]) j++;
    for (let k = i; k <= j; k++) {
      if (labels[order[k]!] === 1) {
        pos++;
        rankSum += (i + j) / 2 + 1;
      }
    }
    i = j + 1;
  }
  const neg = labels.length - pos;
  return pos === 0 || neg === 0 ? null : (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}

async function writeCsv(path: string, ids: readonly string[], probs: ArrayLike<number>): Promise<void> {
  const lines = ['ImageId,probability', ...ids.map((id, i) => `${id},${probs[i]!.toFixed(6)}`)];
  await writeFileAtomic(path, `${lines.join('\n')}\n`);
}

function render(r: StackReport): string {
  const f = (v: number | null) => (v === null ? '-' : v.toFixed(4));
  return [
    `Stacking over ${r.classifiers} classifier(s), ${r.trainImages} training images (${r.trainPositives} positive), ${r.folds} folds`,
    formatTable([
      ['out-of-fold', 'value'],
      ['stacked AUC', f(r.oofAuc)],
      [`stacked accuracy at gate ${r.gate}`, f(r.oofAccuracyAtGate)],
      ['mean classifier accuracy at 0.5', f(r.meanAccuracy)],
    ]),
    r.testImages > 0 ? `Test: ${r.testPositiveAtGate} of ${r.testImages} images above the gate${r.out ? `; wrote ${r.out}` : ''}` : '',
  ]
    .filter(Boolean)
    .join('\n');
}

export const stackCommand: CommandModule<object, StackArgs> = {
  command: 'stack',
  describe: 'Train the stacking model (2N+1 -> 16 -> 1, 5 folds) on out-of-fold classifier probabilities; stacked test probabilities for submit --classifier',
  builder: (y) =>
    y
      .options({
        train: { type: 'string', array: true, demandOption: true, describe: 'Out-of-fold classifier probabilities, one file per classifier: .pnm (stored probabilities) or ImageId,probability CSV; comma-separated files over distinct images (one per fold) are joined' },
        labels: { type: 'string', demandOption: true, describe: 'Train labels CSV (an image is positive when it has a region)' },
        test: { type: 'string', array: true, describe: 'Test probabilities of the same classifiers, in the same order' },
        out: { type: 'string', describe: 'Write the stacked test probabilities (ImageId,probability) here' },
        'oof-out': { type: 'string', describe: 'Write the out-of-fold stacked probabilities here' },
        'model-out': { type: 'string', describe: 'Write the fold models as JSON here' },
        folds: { type: 'number', default: 5, describe: 'Folds' },
        epochs: { type: 'number', default: 500, describe: 'Full-batch Adam steps per fold' },
        gate: { type: 'number', default: DEFAULT_GATE, describe: 'The gate reported on (submit --gate)' },
        seed: { type: 'number', default: 42, describe: 'Seed (folds and initial weights)' },
        ...jsonOption,
      })
      .check((argv) => {
        if (!Number.isInteger(argv.folds) || argv.folds < 2) throw new CliError(`--folds must be an integer >= 2 (got ${argv.folds})`, 2);
        if (!Number.isInteger(argv.epochs) || argv.epochs < 1) throw new CliError(`--epochs must be a positive integer (got ${argv.epochs})`, 2);
        if (!(argv.gate >= 0 && argv.gate <= 1)) throw new CliError(`--gate must be between 0 and 1 (got ${argv.gate})`, 2);
        if (argv.test && argv.test.length !== argv.train.length) throw new CliError(`--test needs one file per --train classifier (${argv.train.length}), in the same order`, 2);
        if (argv.out && !argv.test) throw new CliError('--out writes test probabilities: give --test too', 2);
        return true;
      }),
  handler: async (argv) => {
    const train = await readMatrix(argv.train, '--train');
    const labelRows = await readTrainLabels(argv.labels);
    const missing = train.ids.filter((id) => !labelRows.has(id));
    if (missing.length > 0) throw new CliError(`${missing.length} --train image(s) are not in ${argv.labels}: ${missing.slice(0, 5).join(', ')}`);
    const labels = train.ids.map((id) => (hasPneumothorax(labelRows.get(id)!) ? 1 : 0));
    let ensemble;
    try {
      ensemble = trainStacking(train.probs, labels, { folds: argv.folds, epochs: argv.epochs, seed: argv.seed });
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    const correct = labels.filter((y, i) => (ensemble.oof[i]! > argv.gate ? 1 : 0) === y).length;
    const meanCorrect = labels.filter((y, i) => (train.probs[i]!.reduce((a, b) => a + b, 0) / train.probs[i]!.length > 0.5 ? 1 : 0) === y).length;
    let testImages = 0;
    let testPositive = 0;
    if (argv.test) {
      const test = await readMatrix(argv.test, '--test');
      const stacked = predictStacking(ensemble.models, test.probs);
      testImages = test.ids.length;
      testPositive = [...stacked].filter((p) => p > argv.gate).length;
      if (argv.out) await writeCsv(argv.out, test.ids, stacked);
    }
    if (argv['oof-out']) await writeCsv(argv['oof-out'], train.ids, ensemble.oof);
    if (argv['model-out']) await writeFileAtomic(argv['model-out'], `${JSON.stringify({ features: '2N+1: probabilities, mean, halved circular neighbour differences', classifiers: argv.train, models: ensemble.models.map((m) => m.toJSON()) })}\n`);
    const report: StackReport = {
      classifiers: argv.train.length,
      trainImages: train.ids.length,
      trainPositives: labels.filter((v) => v === 1).length,
      folds: argv.folds,
      oofAuc: auc(ensemble.oof, labels),
      oofAccuracyAtGate: correct / labels.length,
      meanAccuracy: meanCorrect / labels.length,
      gate: argv.gate,
      testImages,
      testPositiveAtGate: testPositive,
      out: argv.out ?? null,
    };
    emitResult(argv, report, render);
  },
};
