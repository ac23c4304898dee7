/**
 * `pneumo-native demo` (the README's first command, `npm run demo`): the whole pipeline on a small
 * synthetic dataset in a work folder: synth -> prepare -> folds -> train -> out-of-fold maps with
 * flip TTA -> threshold search -> test maps -> submission -> score, and an HTML report. A second run
 * reuses what is done; an interrupted one resumes.
 */
import type { CommandModule } from 'yargs';
import { runDemo } from '../../pipeline/demo.js';
import type { DemoResult } from '../../pipeline/demo.js';
import { ProgressBar, formatDuration } from '../progress.js';
import { emitResult, formatTable, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';
import { progressReporter } from './train.js';

interface DemoArgs extends JsonOption {
  workdir: string;
  train: number;
  test: number;
  size: number;
  seed: number;
  epochs?: number;
  config?: string;
  device?: string;
}

function fmt(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(4);
}

function render(r: DemoResult): string {
  return [
    formatTable([
      ['', 'mean Dice', 'with pneumothorax', 'without'],
      ['test submission', fmt(r.test.meanDice), fmt(r.test.positiveDice), fmt(r.test.emptyDice)],
      ['test, all-empty baseline', fmt(r.test.emptyBaseline), '0', '1'],
      ['out-of-fold (best triplet)', fmt(r.validation.meanDice), fmt(r.validation.positiveDice), fmt(r.validation.emptyDice)],
    ]),
    `beats the all-empty baseline by ${(r.test.meanDice - r.test.emptyBaseline).toFixed(4)} mean Dice; triplet (${r.validation.triplet.join(', ')})`,
    `training: ${r.training.epochsRun} epochs, best epoch ${r.training.bestEpoch ?? '-'}, ${r.training.imagesPerSecond.toFixed(1)} images/s, ${(r.training.dataWait * 100).toFixed(1)}% waiting for data`,
    `stages: ${r.stages.map((s) => `${s.name} ${s.reused ? 'reused' : formatDuration(s.seconds)}`).join(', ')}; total ${formatDuration(r.seconds)}`,
    `submission: ${r.submission}`,
    `report: ${r.report} (open it in a browser)`,
  ].join('\n');
}

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'The whole pipeline on a small synthetic dataset (synth, prepare, folds, train, infer with TTA, thresholds, submit, score) with an HTML report',
  builder: (y) =>
    y
      .options(jsonOption)
      .option('workdir', { type: 'string', default: 'pneumo-demo', describe: 'Work folder: keeps everything; a second run reuses what is done' })
      .option('train', { type: 'number', default: 500, describe: 'Synthetic training images' })
      .option('test', { type: 'number', default: 100, describe: 'Synthetic test images' })
      .option('size', { type: 'number', default: 256, describe: 'Image side of the data and the model (a multiple of 32)' })
      .option('seed', { type: 'number', default: 7, describe: 'Seed of the synthetic dataset' })
      .option('epochs', { type: 'number', describe: 'Training epochs (default: the experiment file)' })
      .option('config', { type: 'string', describe: 'Experiment file (default models/experiments/synthetic/small.yaml)' })
      .option('device', { type: 'string', describe: 'auto, cpu, cuda or cuda:N' })
      .example('$0 demo', 'about 10 minutes on 2 CPU cores')
      .example('$0 demo --workdir /tmp/demo --train 100 --test 20 --epochs 2', 'a quick pass'),
  handler: async (argv) => {
    const bars = new Map<string, ProgressBar>();
    const result = await runDemo({
      workdir: argv.workdir,
      train: argv.train,
      test: argv.test,
      size: argv.size,
      seed: argv.seed,
      ...(argv.epochs !== undefined ? { epochs: argv.epochs } : {}),
      ...(argv.config ? { config: argv.config } : {}),
      ...(argv.device ? { device: argv.device } : {}),
      onLog: logLine,
      onTrainEvent: progressReporter(),
      onProgress: (stage, done, total) => {
        let bar = bars.get(stage);
        if (!bar) {
          bar = new ProgressBar(stage, total, { unit: 'images' });
          bars.set(stage, bar);
        }
        bar.update(done, total);
        if (done >= total) bar.finish();
      },
    });
    emitResult(argv, result, render);
  },
};
