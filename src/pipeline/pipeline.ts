/**
 * The seed pipelines (`pneumo-native pipeline models/pipelines/<name>.yaml`): a whole solution as
 * one resumable command. A pipeline file names the seed's models (each a list of training parts,
 * the checkpoint averaging, TTA and blend weight), an optional classifier with its stacking gate,
 * the threshold rule and the submission's post-processing; `planPipeline` turns it into stages,
 * each one `pneumo-native` command line, and `runPipeline` runs them in order in this process,
 * skipping stages whose marker says they already ran with the same command (`stages.ts`).
 *
 * Smoke mode runs the same stages on a tiny synthetic dataset (the file's `smoke` block: image
 * count, size, folds, one epoch, a small backbone) so that every shipped pipeline is exercised end
 * to end by the tests.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { SYNTH_FILES } from '../data/synth/dataset.js';
import { loadConfig } from '../training/config.js';
import type { ExperimentConfig, Triplet } from '../training/config.js';
import { runStage } from './stages.js';
import type { StageRecord } from './stages.js';

/** How a model's fold checkpoints are averaged before inference. */
export type AverageSpec = { top: number } | { epochs: number[]; bnRecompute: boolean };

/** One model of a pipeline: its training parts, in order (each starts from the previous one). */
export interface PipelineModel {
  name: string;
  /** Experiment files, resolved against the pipeline file's folder. */
  parts: string[];
  average: AverageSpec;
  tta: boolean;
  /** Blend weight of its maps (normalised over the models). */
  weight: number;
  /** The backbone of its `--smoke` runs (default: the pipeline's `smoke.backbone`). */
  smokeBackbone: string | null;
}

/** A pipeline file, validated. */
export interface PipelineSpec {
  name: string;
  /** The file it was read from. */
  source: string;
  folds: { k: number; seed: number };
  prepare: { clahe: { clipLimit: number; tileGrid: number } | null };
  models: PipelineModel[];
  /**
   * A classifier: `merge: 'gate'` (the second place) stacks its out-of-fold probabilities and keeps a
   * segmentation only above `gate`; `merge: 'rank'` (the 42nd place) ranks the test images by its
   * probability for `submit.nonEmptyRatio` instead of by predicted area.
   */
  classifier: { parts: string[]; average: AverageSpec; tta: boolean; gate: number; merge: 'gate' | 'rank'; smokeBackbone: string | null } | null;
  /** "search" (the best triplet on out-of-fold maps) or a fixed triplet. */
  thresholds: 'search' | Triplet;
  submit: { minArea: number; nonEmptyRatio: number | null };
  smoke: { train: number; test: number; size: number; folds: number; epochs: number; backbone: string; maxSteps: number; batchSize: number; average: AverageSpec };
}

/** A planned stage: the command line it runs (without the `pneumo-native` prefix). */
export interface PlannedStage {
  name: string;
  argv: string[];
  /** Why the stage is left out (it is listed, not run). */
  skipped?: string;
}

export interface PipelineOptions {
  /** Work folder (everything is written inside it). */
  workdir: string;
  /** A SIIM folder (dicom-images-train/, dicom-images-test/, train-rle.csv, stage_2_sample_submission.csv; test-rle.csv to score). */
  data?: string;
  smoke?: boolean;
  /** "auto", "cpu", "cuda" or "cuda:N" for training (inference runs on cpu unless given). */
  device?: string;
  onLog?: (message: string) => void;
}

export interface PipelineResult {
  name: string;
  workdir: string;
  smoke: boolean;
  submission: string;
  stages: (StageRecord & { argv: string[] })[];
  /** The `score` stage's result, when the test truth is known. */
  score: unknown;
  seconds: number;
}

/** Thrown for an invalid pipeline file: every problem with its path. */
export class PipelineError extends Error {
  constructor(source: string, problems: string[]) {
    super(`${source}: invalid pipeline:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'PipelineError';
  }
}

const TOP_KEYS = ['name', 'folds', 'prepare', 'models', 'classifier', 'thresholds', 'submit', 'smoke'];

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Reads and validates a pipeline file (unknown keys are errors, like experiment files). */
export function readPipeline(path: string): PipelineSpec {
  const source = resolve(path);
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(source, 'utf8'));
  } catch (err) {
    throw new PipelineError(path, [`cannot read or parse the file: ${(err as Error).message.split('\n')[0]}`]);
  }
  const problems: string[] = [];
  const base = dirname(source);
  if (!isObject(raw)) throw new PipelineError(path, ['expected a mapping at the top level']);
  const keys = (obj: Record<string, unknown>, allowed: string[], where: string): void => {
    for (const k of Object.keys(obj)) if (!allowed.includes(k)) problems.push(`unknown key '${where}${k}' (valid: ${allowed.join(', ')})`);
  };
  keys(raw, TOP_KEYS, '');
  const int = (v: unknown, where: string, min: number, fallback?: number): number => {
    if (v === undefined && fallback !== undefined) return fallback;
    if (!Number.isInteger(v) || (v as number) < min) {
      problems.push(`${where}: expected an integer >= ${min} but got ${JSON.stringify(v)}`);
      return min;
    }
    return v as number;
  };
  const num = (v: unknown, where: string, min: number, max: number, fallback?: number): number => {
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'number' || !(v >= min && v <= max)) {
      problems.push(`${where}: expected a number in [${min}, ${max}] but got ${JSON.stringify(v)}`);
      return min;
    }
    return v;
  };
  const parts = (v: unknown, where: string): string[] => {
    if (!Array.isArray(v) || v.length === 0 || !v.every((p) => typeof p === 'string')) {
      problems.push(`${where}: expected a non-empty list of experiment files`);
      return [];
    }
    return v.map((p: string) => {
      const abs = resolve(base, p);
      if (!existsSync(abs)) problems.push(`${where}: ${p} does not exist (resolved to ${abs})`);
      return abs;
    });
  };
  const average = (v: unknown, where: string): AverageSpec => {
    if (isObject(v) && Object.keys(v).length === 1 && Number.isInteger(v.top) && (v.top as number) >= 1) return { top: v.top as number };
    if (isObject(v) && Array.isArray(v.epochs) && v.epochs.length > 0 && v.epochs.every((e) => Number.isInteger(e) && e >= 0)) {
      keys(v, ['epochs', 'bnRecompute'], `${where}.`);
      return { epochs: v.epochs as number[], bnRecompute: v.bnRecompute === undefined ? true : v.bnRecompute === true };
    }
    problems.push(`${where}: expected { top: K } (top-K averaging) or { epochs: [...], bnRecompute: true } (SWA) but got ${JSON.stringify(v)}`);
    return { top: 1 };
  };
  const name = typeof raw.name === 'string' && /^[A-Za-z0-9_-]+$/.test(raw.name) ? raw.name : (problems.push(`name: expected a name of letters, digits, - and _ but got ${JSON.stringify(raw.name)}`), 'pipeline');
  const folds = isObject(raw.folds) ? raw.folds : {};
  keys(folds, ['k', 'seed'], 'folds.');
  const prepare = isObject(raw.prepare) ? raw.prepare : {};
  keys(prepare, ['clahe'], 'prepare.');
  let clahe: PipelineSpec['prepare']['clahe'] = null;
  if (prepare.clahe !== undefined && prepare.clahe !== null) {
    if (!isObject(prepare.clahe)) problems.push('prepare.clahe: expected { clipLimit, tileGrid } or null');
    else {
      keys(prepare.clahe, ['clipLimit', 'tileGrid'], 'prepare.clahe.');
      clahe = { clipLimit: num(prepare.clahe.clipLimit, 'prepare.clahe.clipLimit', 0, 1000, 2), tileGrid: int(prepare.clahe.tileGrid, 'prepare.clahe.tileGrid', 1, 8) };
    }
  }
  const models: PipelineModel[] = [];
  if (!Array.isArray(raw.models) || raw.models.length === 0) problems.push('models: expected a non-empty list of models');
  else {
    raw.models.forEach((m: unknown, i: number) => {
      const where = `models[${i}]`;
      if (!isObject(m)) return void problems.push(`${where}: expected a mapping`);
      keys(m, ['name', 'parts', 'average', 'tta', 'weight', 'smokeBackbone'], `${where}.`);
      if (typeof m.name !== 'string' || !/^[A-Za-z0-9_-]+$/.test(m.name)) problems.push(`${where}.name: expected a name of letters, digits, - and _`);
      models.push({ name: String(m.name), parts: parts(m.parts, `${where}.parts`), average: average(m.average, `${where}.average`), tta: m.tta !== false,
        weight: num(m.weight, `${where}.weight`, 0, 1000, 1),
        smokeBackbone: m.smokeBackbone === undefined ? null : typeof m.smokeBackbone === 'string' ? m.smokeBackbone : (problems.push(`${where}.smokeBackbone: expected a backbone name but got ${JSON.stringify(m.smokeBackbone)}`), null),
      });
    });
  }
  let classifier: PipelineSpec['classifier'] = null;
  if (raw.classifier !== undefined && raw.classifier !== null) {
    const c = isObject(raw.classifier) ? raw.classifier : {};
    keys(c, ['parts', 'average', 'tta', 'gate', 'merge', 'smokeBackbone'], 'classifier.');
    const merge = c.merge === undefined ? 'gate' : c.merge === 'gate' || c.merge === 'rank' ? c.merge : (problems.push(`classifier.merge: expected "gate" or "rank" but got ${JSON.stringify(c.merge)}`), 'gate' as const);
    if (merge === 'rank' && c.gate !== undefined) problems.push('classifier.gate: a classifier with merge "rank" has no gate (it ranks images for submit.nonEmptyRatio)');
    const smokeBackbone = c.smokeBackbone === undefined ? null : typeof c.smokeBackbone === 'string' ? c.smokeBackbone : (problems.push(`classifier.smokeBackbone: expected a backbone name but got ${JSON.stringify(c.smokeBackbone)}`), null);
    classifier = { parts: parts(c.parts, 'classifier.parts'), average: average(c.average, 'classifier.average'), tta: c.tta !== false, gate: num(c.gate, 'classifier.gate', 0, 1, 0.65), merge, smokeBackbone };
  }
  let thresholds: PipelineSpec['thresholds'] = 'search';
  if (raw.thresholds !== undefined && raw.thresholds !== 'search') {
    const t = raw.thresholds;
    if (Array.isArray(t) && t.length === 3 && t.every((x) => typeof x === 'number')) thresholds = [t[0], t[1], t[2]] as Triplet;
    else problems.push(`thresholds: expected "search" or a [top, area, bottom] triplet but got ${JSON.stringify(t)}`);
  }
  const submit = isObject(raw.submit) ? raw.submit : {};
  keys(submit, ['minArea', 'nonEmptyRatio'], 'submit.');
  if (classifier?.merge === 'rank' && (submit.nonEmptyRatio === undefined || submit.nonEmptyRatio === null)) {
    problems.push('classifier.merge "rank" ranks images for submit.nonEmptyRatio, which is not set');
  }
  const smoke = isObject(raw.smoke) ? raw.smoke : {};
  keys(smoke, ['train', 'test', 'size', 'folds', 'epochs', 'backbone', 'maxSteps', 'batchSize', 'average'], 'smoke.');
  const spec: PipelineSpec = {
    name,
    source,
    folds: { k: int(folds.k, 'folds.k', 2, 5), seed: int(folds.seed, 'folds.seed', 0, 42) },
    prepare: { clahe },
    models,
    classifier,
    thresholds,
    submit: { minArea: int(submit.minArea, 'submit.minArea', 0, 0), nonEmptyRatio: submit.nonEmptyRatio === undefined || submit.nonEmptyRatio === null ? null : num(submit.nonEmptyRatio, 'submit.nonEmptyRatio', 0, 1) },
    smoke: {
      train: int(smoke.train, 'smoke.train', 20, 24),
      test: int(smoke.test, 'smoke.test', 1, 6),
      size: int(smoke.size, 'smoke.size', 32, 64),
      folds: int(smoke.folds, 'smoke.folds', 2, 2),
      epochs: int(smoke.epochs, 'smoke.epochs', 1, 1),
      backbone: typeof smoke.backbone === 'string' ? smoke.backbone : 'tiny_unet_r18',
      maxSteps: int(smoke.maxSteps, 'smoke.maxSteps', 1, 2),
      batchSize: int(smoke.batchSize, 'smoke.batchSize', 2, 2),
      average: smoke.average === undefined ? { top: 1 } : average(smoke.average, 'smoke.average'),
    },
  };
  if (problems.length > 0) throw new PipelineError(path, problems);
  return spec;
}

const json = (x: unknown): string => JSON.stringify(x);

/** The stages of a pipeline, each with its exact command line. */
export function planPipeline(spec: PipelineSpec, options: PipelineOptions): PlannedStage[] {
  const w = resolve(options.workdir);
  const smoke = options.smoke === true;
  const data = smoke ? join(w, 'synth') : resolve(options.data ?? 'data/siim');
  const files = {
    trainDicom: join(data, SYNTH_FILES.trainDicom),
    testDicom: join(data, SYNTH_FILES.testDicom),
    labels: join(data, SYNTH_FILES.trainLabels),
    sample: join(data, SYNTH_FILES.sampleSubmission),
    truth: join(data, SYNTH_FILES.testLabels),
  };
  const k = smoke ? spec.smoke.folds : spec.folds.k;
  const foldIds = Array.from({ length: k }, (_, i) => i);
  const labelSize = smoke ? spec.smoke.size : 1024;
  const stages: PlannedStage[] = [];
  if (smoke) stages.push({ name: 'synth', argv: ['synth', '--out', data, '--train', String(spec.smoke.train), '--test', String(spec.smoke.test), '--seed', '7', '--size', String(spec.smoke.size)] });
  const foldsFile = join(w, 'folds.csv');
  const clahe = spec.prepare.clahe;
  const preparedDir = (size: number): string => join(w, `png${size}${clahe ? '-clahe' : ''}`);

  // Every part's config, loaded as the pipeline will train it.
  interface Part {
    file: string;
    config: ExperimentConfig;
    overrides: string[];
    /** The folds it trains (every fold of the split, or the classifier's own subset of them). */
    folds: number[];
  }
  // `ownFolds`: the part keeps the folds its recipe names (those of the pipeline's split; the 42nd
  // place's classifier trains 5 of the 10); smoke runs train every smoke fold.
  const loadParts = (files_: string[], smokeAverage: AverageSpec, smokeBackbone: string | null = null, ownFolds = false): Part[] =>
    files_.map((file) => {
      const plain = loadConfig(file);
      const size = smoke ? spec.smoke.size : plain.data.imgSize;
      const folds = ownFolds && !smoke ? plain.folds.use.filter((f) => foldIds.includes(f)) : foldIds;
      if (folds.length === 0) throw new Error(`${file}: folds.use [${plain.folds.use.join(', ')}] names no fold of the pipeline's ${k}-fold split`);
      const o: Record<string, unknown> = {
        data: { dir: preparedDir(size), folds: foldsFile, ...(smoke ? { imgSize: size } : {}) },
        output: { dir: join(w, 'experiments') },
        folds: { use: folds },
        ...(options.device ? { device: options.device } : {}),
      };
      if (smoke) {
        o.training = { epochs: spec.smoke.epochs, maxStepsPerEpoch: spec.smoke.maxSteps, batchSize: spec.smoke.batchSize, ...(plain.training.accumulation > 1 ? { accumulation: 1 } : {}) };
        // Smoke runs are offline and tiny: random initialisation, never ImageNet downloads.
        if (plain.model.fromPart === null) o.model = { backbone: smokeBackbone ?? spec.smoke.backbone, encoderWeights: null };
        if (plain.checkpoints.keepEpochs.length > 0) o.checkpoints = { keepEpochs: 'epochs' in smokeAverage ? smokeAverage.epochs : [] };
      }
      const config = loadConfig(file, o);
      const flat: string[] = [];
      const walk = (obj: Record<string, unknown>, prefix: string): void => {
        for (const [key, v] of Object.entries(obj)) {
          const path = prefix ? `${prefix}.${key}` : key;
          if (isObject(v)) walk(v, path);
          else flat.push(`--${path}`, Array.isArray(v) ? json(v) : String(v));
        }
      };
      walk(o, '');
      return { file, config, overrides: flat, folds };
    });

  const sizes = new Set<number>();
  const modelParts = spec.models.map((m) => ({ model: m, parts: loadParts(m.parts, smoke ? spec.smoke.average : m.average, m.smokeBackbone) }));
  const classifierParts = spec.classifier ? loadParts(spec.classifier.parts, smoke ? spec.smoke.average : spec.classifier.average, spec.classifier.smokeBackbone, true) : [];
  for (const { parts } of modelParts) for (const p of parts) sizes.add(p.config.data.imgSize);
  for (const p of classifierParts) sizes.add(p.config.data.imgSize);
  for (const size of [...sizes].sort((a, b) => a - b)) {
    stages.push({
      name: `prepare-${size}`,
      argv: ['prepare', '--train-dicom', files.trainDicom, '--test-dicom', files.testDicom, '--labels', files.labels, '--out', preparedDir(size), '--img-size', String(size), ...(clahe ? ['--clahe', `${clahe.clipLimit},${clahe.tileGrid}`] : [])],
    });
  }
  stages.push({ name: 'folds', argv: ['folds', '--labels', files.labels, '--k', String(k), '--seed', String(spec.folds.seed), '--out', foldsFile] });

  /** Training, averaging and inference of one model; returns its map files. */
  const modelStages = (name: string, parts: Part[], average: AverageSpec, tta: boolean, withOof = true): { oof: string[]; test: string } => {
    let last: Part | undefined;
    for (const p of parts) {
      const stage: PlannedStage = { name: `train-${name}-part${p.config.part}`, argv: ['train', '--config', p.file, ...p.overrides, '--resume'] };
      if (p.config.secondStage) stage.skipped = 'a second-stage part: it trains on the stage-1 test images as an always-train fold, which this run was not given';
      else last = p;
      stages.push(stage);
    }
    const size = last!.config.data.imgSize;
    const avg = smoke ? spec.smoke.average : average;
    const oof: string[] = [];
    const checkpoints: string[] = [];
    for (const fold of last!.folds) {
      const run = join(w, 'experiments', last!.config.name, `part${last!.config.part}`, `fold${fold}`);
      const ckpt = join(w, 'models', `${name}-fold${fold}.ckpt`);
      checkpoints.push(ckpt);
      const select = 'top' in avg ? ['--top', String(avg.top)] : ['--epochs', ...avg.epochs.map(String), ...(avg.bnRecompute ? ['--data', preparedDir(size), '--folds', foldsFile, '--fold', String(fold)] : [])];
      stages.push({ name: `average-${name}-fold${fold}`, argv: ['swa', '--run', run, ...select, '--out', ckpt, '--quiet'] });
      const maps = join(w, 'maps', `oof-${name}-fold${fold}.pnm`);
      if (!withOof) continue;
      oof.push(maps);
      stages.push({ name: `infer-oof-${name}-fold${fold}`, argv: ['infer', '--model', ckpt, '--prepared', preparedDir(size), '--split', 'train', '--folds', foldsFile, '--fold', String(fold), ...(tta ? ['--tta'] : []), '--out', maps, '--overwrite', '--quiet'] });
    }
    const test = join(w, 'maps', `test-${name}.pnm`);
    stages.push({ name: `infer-test-${name}`, argv: ['infer', ...checkpoints.flatMap((c) => ['--model', c]), '--prepared', preparedDir(size), ...(tta ? ['--tta'] : []), '--out', test, '--overwrite', '--quiet'] });
    return { oof, test };
  };

  const modelMaps = modelParts.map(({ model, parts }) => ({ model, ...modelStages(model.name, parts, model.average, model.tta) }));
  let oofMaps: string[];
  let testMaps: string;
  if (modelMaps.length === 1) {
    oofMaps = modelMaps[0]!.oof;
    testMaps = modelMaps[0]!.test;
  } else {
    oofMaps = foldIds.map((fold) => {
      const out = join(w, 'maps', `oof-blend-fold${fold}.pnm`);
      stages.push({ name: `blend-oof-fold${fold}`, argv: ['blend', ...modelMaps.flatMap((m) => ['--maps', `${m.oof[fold]}:${m.model.weight}`]), '--out', out, '--overwrite', '--quiet'] });
      return out;
    });
    testMaps = join(w, 'maps', 'test-blend.pnm');
    stages.push({ name: 'blend-test', argv: ['blend', ...modelMaps.flatMap((m) => ['--maps', `${m.test}:${m.model.weight}`]), '--out', testMaps, '--overwrite', '--quiet'] });
  }

  let gate: string[] = [];
  if (spec.classifier?.merge === 'rank') {
    // The 42nd place: the classifier's test probabilities (its folds averaged) rank the images.
    const c = modelStages('classifier', classifierParts, spec.classifier.average, spec.classifier.tta, false);
    gate = ['--rank-by', c.test];
  } else if (spec.classifier) {
    const c = modelStages('classifier', classifierParts, spec.classifier.average, spec.classifier.tta);
    const gateFile = join(w, 'gate.csv');
    stages.push({ name: 'stack', argv: ['stack', '--train', c.oof.join(','), '--labels', files.labels, '--test', c.test, '--gate', String(spec.classifier.gate), '--out', gateFile] });
    gate = ['--classifier', gateFile, '--gate', String(spec.classifier.gate)];
  }

  const thresholdsFile = join(w, 'thresholds.json');
  let triplet: string[];
  if (spec.thresholds === 'search') {
    stages.push({ name: 'thresholds', argv: ['thresholds', '--maps', ...oofMaps, '--truth', files.labels, '--truth-size', String(labelSize), '--out', thresholdsFile, '--quiet'] });
    triplet = ['--thresholds', thresholdsFile];
  } else {
    triplet = ['--triplet', spec.thresholds.join(',')];
  }
  const submission = join(w, 'submission.csv');
  stages.push({
    name: 'submit',
    argv: [
      'submit', '--maps', testMaps, '--sample', files.sample, '--out', submission, ...triplet,
      ...(spec.submit.minArea > 0 ? ['--min-area', String(spec.submit.minArea)] : []),
      ...(spec.submit.nonEmptyRatio !== null ? ['--non-empty-ratio', String(spec.submit.nonEmptyRatio)] : []),
      ...gate, '--size', String(labelSize), '--quiet',
    ],
  });
  const score: PlannedStage = { name: 'score', argv: ['score', '--truth', files.truth, '--pred', submission, '--size', String(labelSize)] };
  if (!smoke && !existsSync(files.truth)) score.skipped = `no test labels (${files.truth}) to score against`;
  stages.push(score);
  return stages;
}

/** A command line as a shell would take it. */
export function formatCommand(argv: readonly string[]): string {
  return ['pneumo-native', ...argv].map((a) => (/^[A-Za-z0-9_./:,=@+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * Runs a pipeline: every planned stage in order, in this process, each through the CLI command it
 * names (its result captured), skipping stages already done with the same command line.
 * @throws Error naming the stage and its command when one fails
 */
export async function runPipeline(spec: PipelineSpec, options: PipelineOptions): Promise<PipelineResult> {
  const started = performance.now();
  const log = options.onLog ?? (() => {});
  const workdir = resolve(options.workdir);
  const plan = planPipeline(spec, options);
  // Loaded here, not at the top: the CLI imports this module.
  const { buildCli } = await import('../cli/app.js');
  const { captureResults } = await import('../cli/output.js');
  const records: PipelineResult['stages'] = [];
  let score: unknown = null;
  for (const sub of ['models', 'maps']) mkdirSync(join(workdir, sub), { recursive: true });
  for (const stage of plan) {
    if (stage.skipped) {
      log(`pipeline: ${stage.name}: skipped (${stage.skipped})`);
      continue;
    }
    const stageList: StageRecord[] = [];
    const result = await runStage(
      workdir,
      stageList,
      stage.name,
      { argv: stage.argv },
      log,
      async () => {
        log(`  ${formatCommand(stage.argv)}`);
        let captured: unknown = null;
        const before = process.exitCode;
        process.exitCode = undefined;
        try {
          await captureResults(
            (r) => {
              captured = r;
            },
            () => buildCli([...stage.argv]).parseAsync(),
          );
        } catch (err) {
          throw new Error(`stage ${stage.name} failed: ${(err as Error).message}\n  command: ${formatCommand(stage.argv)}`);
        }
        const code = process.exitCode;
        process.exitCode = before;
        if (typeof code === 'number' && code !== 0) throw new Error(`stage ${stage.name} exited with status ${code}\n  command: ${formatCommand(stage.argv)}`);
        return { result: captured };
      },
      'pipeline',
    );
    records.push({ ...stageList[0]!, argv: stage.argv });
    if (stage.name === 'score') score = result;
  }
  return { name: spec.name, workdir, smoke: options.smoke === true, submission: join(workdir, 'submission.csv'), stages: records, score, seconds: (performance.now() - started) / 1000 };
}
