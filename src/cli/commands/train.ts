/**
 * `pneumo-native train`: trains an experiment part (src/training/trainer.ts) from a config file
 * and/or flags. Every config key is a flag (`--optimizer.lr 1e-5`), with short forms for the
 * common ones (`--backbone`, `--img-size`, `--epochs`, ...). `--preview N` writes a PNG grid of
 * augmented training samples and exits.
 */
import { closestName, editDistance } from '../../training/augment/transforms.js';
import { join, resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import type { AugmentPreviewReport } from '../../training/preview.js';
import { loadPreviewSamples, renderAugmentPreview } from '../../training/preview.js';
import { ConfigError, deepMerge, flagType, loadConfig, schemaPaths, validateConfig } from '../../training/config.js';
import type { ExperimentConfig } from '../../training/config.js';
import { configPipeline, describeValidation, foldDir, trainExperiment, TrainingDivergedError } from '../../training/trainer.js';
import type { ExperimentResult, FoldResult, TrainEvent } from '../../training/trainer.js';
import { CliError, emitResult, formatTable, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';
import { ProgressBar, formatDuration } from '../progress.js';
import { defaultDevice } from '../../core/runtime.js';
import { ProcessGroup, distributedEnv, distributedInfo } from '../../distributed/index.js';
import type { DistributedBackend } from '../../distributed/index.js';
import { LaunchError, launchWorkers, runParallel, withoutFlags } from '../../distributed/launch.js';

/** Short flags for the keys people set most, and the config path each sets. */
export const SHORT_FLAGS: Record<string, { path: string; describe: string }> = {
  name: { path: 'name', describe: 'Experiment name (outputs under <output.dir>/<name>/part<part>/fold<k>)' },
  backbone: { path: 'model.backbone', describe: 'Model from the registry (pneumo-native models), e.g. unet_se50, albunet34, tiny_unet_r18' },
  'encoder-weights': { path: 'model.encoderWeights', describe: 'Pretrained encoder weights: imagenet (fetched once into the cache, verified) or a state dict file in upstream naming' },
  'img-size': { path: 'data.imgSize', describe: 'Training size in pixels' },
  'data-dir': { path: 'data.dir', describe: 'A folder written by `prepare` (train/, mask/, folds.csv)' },
  epochs: { path: 'training.epochs', describe: 'Epochs' },
  'batch-size': { path: 'training.batchSize', describe: 'Batch size' },
  lr: { path: 'optimizer.lr', describe: 'Learning rate' },
  output: { path: 'output.dir', describe: 'Output root folder' },
  seed: { path: 'seed', describe: 'Seed of everything random' },
  device: { path: 'device', describe: 'auto, cpu, cuda or cuda:N' },
  task: { path: 'task', describe: 'segment, or classify (the second place classifier: balanced batches, label from the mask)' },
  'sync-bn': { path: 'training.syncBatchNorm', describe: 'SyncBatchNorm in a data-parallel run: BatchNorm statistics over the global batch of all ranks' },
};

interface TrainArgs extends JsonOption {
  config?: string;
  fold?: number[];
  resume: boolean;
  preview?: number;
  'preview-out'?: string;
  nproc?: number;
  'folds-parallel'?: number;
  backend?: string;
  'dist-timeout': number;
  'bucket-mb': number;
  'broadcast-buffers': boolean;
  [key: string]: unknown;
}

/** Flags of the distributed launchers and workers (not config keys). */
const DISTRIBUTED_FLAGS = ['nproc', 'folds-parallel', 'backend', 'dist-timeout', 'bucket-mb', 'broadcast-buffers'];
const OWN_FLAGS = ['config', 'fold', 'resume', 'preview', 'preview-out', 'json', 'help', 'version', ...DISTRIBUTED_FLAGS];

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
  node[parts.at(-1)!] = value;
}

function getPath(source: Record<string, unknown>, path: string): unknown {
  let value: unknown = source;
  for (const p of path.split('.')) value = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[p] : undefined;
  return value;
}

/** Every flag path given on the command line (nested objects flattened to dotted paths). */
function givenPaths(argv: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(argv)) {
    if (!prefix && (key === '_' || key === '$0')) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) out.push(...givenPaths(value as Record<string, unknown>, path));
    else out.push(path);
  }
  return out;
}

/** The closest valid flag, when it is close enough to be a plausible typo. */
function closest(name: string, candidates: string[]): string | undefined {
  const best = closestName(name, candidates);
  return best !== undefined && editDistance(name.toLowerCase(), best.toLowerCase()) <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

const kebabToCamel = (s: string): string => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * The config of a `train` invocation: the file (if any), then the flags. Unknown flags are errors
 * naming the flag and the closest valid one.
 */
export function configFromArgs(argv: Record<string, unknown>): ExperimentConfig {
  const configPaths = schemaPaths().filter((p) => p !== 'extends');
  const known = new Set<string>([...configPaths, ...Object.keys(SHORT_FLAGS), ...OWN_FLAGS]);
  for (const k of [...Object.keys(SHORT_FLAGS), ...OWN_FLAGS]) known.add(kebabToCamel(k));
  // yargs also sets the kebab-case twin of a camelCase key (training.early-stopping).
  for (const p of configPaths) known.add(p.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`));
  for (const path of givenPaths(argv)) {
    if (known.has(path)) continue;
    const suggestion = closest(path, [...configPaths, ...Object.keys(SHORT_FLAGS), ...OWN_FLAGS]);
    throw new CliError(`unknown flag --${path}${suggestion ? ` (did you mean --${suggestion}?)` : ''}`, 2);
  }
  const overrides: Record<string, unknown> = {};
  const put = (flag: string, path: string, raw: unknown): void => {
    let value = raw;
    const type = flagType(path);
    if (type === 'number' && typeof value === 'number' && Number.isNaN(value)) throw new CliError(`--${flag}: expected a number`, 2);
    if (type === 'number' && value === 'null') value = null;
    if (type === 'string' && value === 'null') value = null;
    if (type === 'array' && typeof value === 'string') {
      try {
        value = JSON.parse(value);
      } catch {
        throw new CliError(`--${flag}: expected JSON (e.g. [[0.75,2000,0.3]] or [0,1]) but received ${JSON.stringify(value)}`, 2);
      }
    }
    if (type === 'array' && Array.isArray(value) && path === 'validation.triplets' && value.every((v) => typeof v === 'string')) {
      try {
        value = value.map((v: string) => JSON.parse(v) as unknown);
      } catch {
        throw new CliError(`--${flag}: expected JSON triplets`, 2);
      }
    }
    setPath(overrides, path, value);
  };
  for (const path of configPaths) {
    const value = getPath(argv, path);
    if (value !== undefined) put(path, path, value);
  }
  for (const [flag, { path }] of Object.entries(SHORT_FLAGS)) {
    const value = argv[flag];
    // --name, --seed, --device, --task are config keys themselves; an object is yargs' parent of a dotted flag (--output.dir).
    if (value === undefined || flag === path || (typeof value === 'object' && value !== null && !Array.isArray(value))) continue;
    if (getPath(argv, path) !== undefined) throw new CliError(`give --${flag} or --${path}, not both`, 2);
    put(flag, path, value);
  }
  if (argv.fold !== undefined) setPath(overrides, 'folds.use', argv.fold);
  // A classifier trains on balanced batches unless the sampler is set explicitly.
  if (getPath(overrides, 'task') === 'classify' && getPath(overrides, 'sampler.mode') === undefined) setPath(overrides, 'sampler.mode', 'balanced');
  try {
    if (typeof argv.config === 'string') return loadConfig(argv.config, overrides);
    return validateConfig(deepMerge({}, overrides), 'command line');
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, 2);
    throw err;
  }
}

function addConfigFlags(y: Argv): Argv {
  let out = y;
  for (const path of schemaPaths()) {
    if (path === 'extends' || Object.hasOwn(SHORT_FLAGS, path)) continue;
    const type = flagType(path);
    out = out.option(path, { type: type === 'array' ? 'string' : type, hidden: true, describe: `config ${path}` });
  }
  for (const [flag, { path, describe }] of Object.entries(SHORT_FLAGS)) {
    const type = flagType(path);
    out = out.option(flag, { type: type === 'array' ? 'string' : type, describe: flag === path ? describe : `${describe} (= --${path})` });
  }
  return out;
}

function renderResult(r: ExperimentResult & { config: string | null }): string {
  const rows: (string | number)[][] = [['fold', 'epochs', 'stopped', 'best epoch', 'score', 'Dice positive', 'all-empty', 'images/s', 'data wait']];
  for (const f of r.folds) {
    const v = f.best?.validation;
    rows.push([
      f.fold,
      f.epochsRun,
      f.stopped,
      f.best?.epoch ?? '-',
      v ? v.score.toFixed(4) : '-',
      v?.dicePositive !== null && v?.dicePositive !== undefined ? v.dicePositive.toFixed(4) : '-',
      v ? v.emptyBaseline.toFixed(4) : '-',
      f.imagesPerSecond.toFixed(1),
      `${(100 * f.dataWait).toFixed(1)}%`,
    ]);
  }
  const lines = [`Trained ${r.name} part ${r.part} in ${r.dir}`, formatTable(rows)];
  for (const f of r.folds) if (f.bestCheckpoint) lines.push(`fold ${f.fold}: best checkpoint ${f.bestCheckpoint}`);
  return lines.join('\n');
}

/** Draws the trainer's events on stderr: one progress bar per epoch, log lines between. */
/** Draws training events as progress bars and log lines on stderr (shared with `demo`). */
export function progressReporter(silentBars = false): (e: TrainEvent) => void {
  let bar: ProgressBar | undefined;
  let epochStarted = 0;
  let epochsLeft = 0;
  let lastEpochSeconds = 0;
  return (e) => {
    switch (e.type) {
      case 'epoch-start':
        if (epochStarted > 0) lastEpochSeconds = (Date.now() - epochStarted) / 1000;
        epochStarted = Date.now();
        epochsLeft = e.epochs - e.epoch - 1;
        bar = new ProgressBar(`fold ${e.fold} epoch ${e.epoch + 1}/${e.epochs}`, e.steps, { unit: 'steps', silent: silentBars });
        break;
      case 'step': {
        // The fold's ETA: this epoch's rest plus the later epochs at the last epoch's pace (validation included).
        const elapsed = (Date.now() - epochStarted) / 1000;
        const thisEpoch = (elapsed / e.step) * (e.steps - e.step);
        const later = epochsLeft * (lastEpochSeconds || (elapsed / e.step) * e.steps);
        bar?.update(e.step, e.steps, `loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${e.imagesPerSecond.toFixed(1)} img/s wait ${(100 * e.dataWait).toFixed(0)}% fold ETA ${formatDuration(thisEpoch + later)}`);
        break;
      }
      case 'validation-start':
        bar?.finish();
        bar = undefined;
        logLine(`fold ${e.fold} epoch ${e.epoch + 1}: validating ${e.images} images...`);
        break;
      case 'epoch-end':
        bar?.finish();
        bar = undefined;
        break;
      case 'log':
        bar?.finish();
        bar = undefined;
        logLine(`${e.fold === null ? '' : `[fold ${e.fold}] `}${e.message}`);
        break;
      case 'fold-end':
        if (e.result.best) logLine(`[fold ${e.fold}] done in ${formatDuration(e.result.seconds)}: best epoch ${e.result.best.epoch}, ${describeValidation(e.result.best.validation)}`);
        break;
      default:
        break;
    }
  };
}

async function runPreview(config: ExperimentConfig, n: number, out: string | undefined, json: boolean): Promise<void> {
  if (config.data.dir === null) throw new CliError('--preview needs prepared images: set --data-dir (or data.dir in the config)', 2);
  const pipeline = await configPipeline(config);
  const samples = await loadPreviewSamples({ images: join(config.data.dir, 'train'), masks: join(config.data.dir, 'mask'), n, size: config.data.imgSize, seed: config.seed });
  const path = resolve(out ?? join(foldDir(config, config.folds.use[0] ?? 0, config.part), '..', 'preview.png'));
  const report = await renderAugmentPreview(samples, { pipeline, size: config.data.imgSize, seed: config.seed, out: path });
  emitResult({ json }, report, (r: AugmentPreviewReport) => `Wrote ${r.out} (${r.width}x${r.height}, ${r.ids.length} training images, original | augmented with ${config.augment.file ?? config.augment.preset})`);
}

export const trainCommand: CommandModule<object, TrainArgs> = {
  command: 'train',
  describe: 'Train an experiment part: folds, validation over the triplet grid, top-K checkpoints, resumable',
  builder: (y) =>
    addConfigFlags(
      y
        .strict(false) // unknown flags are checked in configFromArgs, with the closest valid flag named
        .usage(
          '$0 train [--config part0.yaml] [flags]\n\nEvery config key is a flag: --optimizer.lr 1e-5, --sampler.positiveRate 0.6, --validation.triplets \'[[0.75,2000,0.3]]\'.\n' +
            'Outputs go to <output.dir>/<name>/part<part>/fold<k>/: last.ckpt, epochNNN.ckpt (top K), best.ckpt, summary.csv, metrics.jsonl, train.log, curves.png.',
        )
        .options({
          config: { type: 'string', describe: 'Experiment YAML/JSON (models/experiments/...); flags override it' },
          fold: { type: 'number', array: true, describe: 'Train only this fold (repeatable); default folds.use' },
          resume: { type: 'boolean', default: false, describe: "Continue each fold from its last.ckpt (exactly where it stopped)" },
          preview: { type: 'number', describe: 'Write a PNG grid of N augmented training samples and exit' },
          'preview-out': { type: 'string', describe: 'Where --preview writes (default <output.dir>/<name>/part<part>/preview.png)' },
          nproc: { type: 'number', describe: 'Data-parallel training in N local worker processes (c10d: Gloo on CPU, NCCL on GPUs); a process started by torchrun (RANK, WORLD_SIZE, ...) joins its group instead' },
          'folds-parallel': { type: 'number', describe: 'Train the folds independently in up to N processes at once, one summary at the end' },
          backend: { type: 'string', choices: ['gloo', 'nccl'], describe: 'c10d backend of a data-parallel run (default: nccl on CUDA when built with it, else gloo)' },
          'dist-timeout': { type: 'number', default: 300, describe: 'Seconds after which a data-parallel run gives up on a missing or stuck rank (rendezvous and every collective)' },
          'bucket-mb': { type: 'number', default: 25, describe: 'Gradient all-reduce bucket size in MiB (DistributedDataParallel bucket_cap_mb)' },
          'broadcast-buffers': { type: 'boolean', default: true, describe: "Broadcast rank 0's BatchNorm statistics before each forward (DDP broadcast_buffers)" },
          ...jsonOption,
        }) as unknown as Argv,
    ) as Argv<TrainArgs>,
  handler: async (argv) => {
    const config = configFromArgs(argv);
    if (argv.preview !== undefined) {
      if (!Number.isInteger(argv.preview) || argv.preview < 1) throw new CliError(`--preview: expected a positive integer but received ${argv.preview}`, 2);
      await runPreview(config, argv.preview, argv['preview-out'], argv.json === true);
      return;
    }
    const nproc = argv.nproc;
    const foldsParallel = argv['folds-parallel'];
    if (nproc !== undefined && (!Number.isInteger(nproc) || nproc < 1)) throw new CliError(`--nproc: expected a positive integer but received ${nproc}`, 2);
    if (foldsParallel !== undefined && (!Number.isInteger(foldsParallel) || foldsParallel < 1)) throw new CliError(`--folds-parallel: expected a positive integer but received ${foldsParallel}`, 2);
    if (nproc !== undefined && foldsParallel !== undefined) throw new CliError('give --nproc or --folds-parallel, not both', 2);
    if (!(argv['dist-timeout'] > 0)) throw new CliError(`--dist-timeout: expected a number of seconds > 0 but received ${argv['dist-timeout']}`, 2);
    if (!(argv['bucket-mb'] > 0)) throw new CliError(`--bucket-mb: expected a number > 0 but received ${argv['bucket-mb']}`, 2);
    let env;
    try {
      env = distributedEnv();
    } catch (err) {
      throw new CliError(`torchrun environment: ${(err as Error).message}`, 2);
    }
    const main = process.argv[1]!;
    const launcherFlags = { nproc: 'value', 'folds-parallel': 'value' } as const;
    if (foldsParallel !== undefined && env === null) {
      await runFoldsParallel(config, foldsParallel, main, argv);
      return;
    }
    if (nproc !== undefined && nproc > 1 && env === null) {
      const info = distributedInfo();
      if (!info.available) throw new CliError(info.reason, 1);
      logLine(`train: ${nproc} worker processes, data-parallel over c10d (${argv.backend ?? 'default backend'}), global batch ${config.training.batchSize * nproc} (${config.training.batchSize} per rank)`);
      try {
        await launchWorkers({ nproc, args: [main, ...withoutFlags(process.argv.slice(2), launcherFlags)], graceSeconds: argv['dist-timeout'] + 30 });
      } catch (err) {
        if (err instanceof LaunchError) throw new CliError(err.message, 1);
        throw err;
      }
      return;
    }
    if (env !== null && env.worldSize > 1) {
      await runRank(config, env, argv);
      return;
    }
    logLine(`train: ${config.name} part ${config.part}, ${config.model.backbone} at ${config.data.imgSize} px, folds ${config.folds.use.join(', ')}${argv.resume ? ', resuming' : ''}`);
    let result: ExperimentResult;
    try {
      result = await trainExperiment(config, { resume: argv.resume, onEvent: progressReporter() });
    } catch (err) {
      if (err instanceof TrainingDivergedError) throw new CliError(err.message, 1);
      throw err;
    }
    emitResult(argv, { ...result, config: argv.config ?? null }, renderResult);
  },
};

/**
 * One rank of a data-parallel run (started by `--nproc`, torchrun or srun): joins the c10d group
 * from the environment, trains its shard; rank 0 alone prints the result. A failed rank exits
 * promptly even if native work is still stuck on a dead peer.
 */
async function runRank(config: ExperimentConfig, env: NonNullable<ReturnType<typeof distributedEnv>>, argv: TrainArgs): Promise<void> {
  const info = distributedInfo();
  if (!info.available) throw new CliError(info.reason, 1);
  let device = config.device === 'auto' ? await defaultDevice() : config.device;
  // One GPU per process: "cuda" (or the automatic choice of cuda:0) becomes cuda:LOCAL_RANK.
  if (device === 'cuda' || (config.device === 'auto' && device.startsWith('cuda'))) device = `cuda:${env.localRank}`;
  const backend = (argv.backend ?? (device.startsWith('cuda') && info.backends.includes('nccl') ? 'nccl' : 'gloo')) as DistributedBackend;
  const main = env.rank === 0;
  if (main) logLine(`train: ${config.name} part ${config.part}, ${config.model.backbone} at ${config.data.imgSize} px, folds ${config.folds.use.join(', ')}, ${env.worldSize} ranks (${backend}, ${env.masterAddr}:${env.masterPort})${argv.resume ? ', resuming' : ''}`);
  const exitSoon = (): void => {
    // Native work waiting on a dead peer must not keep a failed rank alive.
    setTimeout(() => process.exit(process.exitCode ?? 1), 2000).unref();
  };
  let group: ProcessGroup;
  try {
    group = await ProcessGroup.init({ ...env, backend, timeoutSeconds: argv['dist-timeout'] });
  } catch (err) {
    exitSoon();
    throw new CliError(`rank ${env.rank}: ${(err as Error).message}`, 1);
  }
  let result: ExperimentResult;
  try {
    result = await trainExperiment(
      { ...config, device },
      { resume: argv.resume, ...(main ? { onEvent: progressReporter() } : {}), distributed: { group, bucketMb: argv['bucket-mb'], broadcastBuffers: argv['broadcast-buffers'] } },
    );
  } catch (err) {
    exitSoon();
    if (err instanceof TrainingDivergedError) throw new CliError(err.message, 1);
    throw new CliError(`rank ${env.rank}: ${(err as Error).message}`, 1);
  }
  group.destroy();
  if (main) emitResult(argv, { ...result, config: argv.config ?? null, worldSize: env.worldSize }, renderResult);
}

/** `--folds-parallel N`: each fold in its own `train --fold k --json` process, up to N at once; one summary. */
async function runFoldsParallel(config: ExperimentConfig, parallel: number, main: string, argv: TrainArgs): Promise<void> {
  const folds = config.folds.use;
  const base = withoutFlags(process.argv.slice(2), { 'folds-parallel': 'value', nproc: 'value', fold: 'value', json: 'boolean' });
  logLine(`train: ${config.name} part ${config.part}, folds ${folds.join(', ')} in up to ${Math.min(parallel, folds.length)} processes at once${argv.resume ? ', resuming' : ''}`);
  let outputs: string[];
  try {
    outputs = await runParallel(
      folds.map((f) => ({ label: `fold ${f}`, args: [main, ...base, '--fold', String(f), '--json'] })),
      parallel,
    );
  } catch (err) {
    if (err instanceof LaunchError) throw new CliError(err.message, 1);
    throw err;
  }
  const results = outputs.map((o, i) => {
    const line = o.trim().split('\n').at(-1) ?? '';
    try {
      return JSON.parse(line) as ExperimentResult;
    } catch {
      throw new CliError(`fold ${folds[i]}: expected its JSON result on stdout but received ${JSON.stringify(o.slice(0, 200))}`, 1);
    }
  });
  const merged: ExperimentResult = { name: config.name, part: config.part, dir: results[0]?.dir ?? '', folds: results.flatMap((r) => r.folds) };
  emitResult(argv, { ...merged, config: argv.config ?? null }, renderResult);
}

export type { FoldResult };
