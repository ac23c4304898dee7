/**
 * `pneumo-native pipeline models/pipelines/<name>.yaml`: a seed solution as one resumable command
 * (prepare, folds, every training part of every model and fold, checkpoint averaging, inference
 * with TTA, blending, thresholds, classifier gate, submission, score). `--plan` prints the stages
 * and their exact commands; `--smoke` runs them on a tiny synthetic dataset.
 */
import type { CommandModule } from 'yargs';
import { formatCommand, planPipeline, readPipeline, runPipeline } from '../../pipeline/pipeline.js';
import type { PipelineResult } from '../../pipeline/pipeline.js';
import { formatDuration } from '../progress.js';
import { CliError, emitResult, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';

interface PipelineArgs extends JsonOption {
  file: string;
  workdir?: string;
  data?: string;
  smoke: boolean;
  plan: boolean;
  device?: string;
}

function render(r: PipelineResult): string {
  return [
    `${r.name}${r.smoke ? ' (smoke)' : ''}: ${r.stages.length} stages (${r.stages.filter((s) => s.reused).length} reused) in ${formatDuration(r.seconds)}`,
    ...r.stages.map((s) => `  ${s.name}: ${s.reused ? 'reused' : formatDuration(s.seconds)}`),
    `submission: ${r.submission}`,
    r.score ? `score: ${JSON.stringify(r.score)}` : '',
  ]
    .filter(Boolean)
    .join('\n');
}

export const pipelineCommand: CommandModule<object, PipelineArgs> = {
  command: 'pipeline <file>',
  describe: 'Run a seed solution end to end from its pipeline file (models/pipelines/*.yaml); resumable',
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'Pipeline file, e.g. models/pipelines/first-place.yaml' })
      .options({
        workdir: { type: 'string', describe: 'Work folder (default pipeline-<name>, or pipeline-<name>-smoke with --smoke)' },
        data: { type: 'string', default: 'data/siim', describe: 'SIIM folder: dicom-images-train/, dicom-images-test/, train-rle.csv, stage_2_sample_submission.csv (test-rle.csv to score)' },
        smoke: { type: 'boolean', default: false, describe: "The same stages on a tiny synthetic dataset (the file's smoke block: small size, 1 epoch, 2 folds, a small backbone)" },
        plan: { type: 'boolean', default: false, describe: 'Print the stages and their exact commands without running them' },
        device: { type: 'string', describe: 'Training device: auto, cpu, cuda or cuda:N (default: each experiment file)' },
        ...jsonOption,
      })
      .example('$0 pipeline models/pipelines/first-place.yaml --plan', 'the stages and commands of the first place')
      .example('$0 pipeline models/pipelines/unetpp-efficientnet.yaml --smoke --workdir /tmp/pp', 'a quick end-to-end pass on synthetic data'),
  handler: async (argv) => {
    let spec;
    try {
      spec = readPipeline(argv.file);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    const workdir = argv.workdir ?? `pipeline-${spec.name}${argv.smoke ? '-smoke' : ''}`;
    const options = { workdir, smoke: argv.smoke, ...(argv.data !== undefined ? { data: argv.data } : {}), ...(argv.device ? { device: argv.device } : {}), onLog: logLine };
    if (argv.plan) {
      let plan;
      try {
        plan = planPipeline(spec, options);
      } catch (err) {
        throw new CliError((err as Error).message);
      }
      const result = { name: spec.name, source: spec.source, workdir, smoke: argv.smoke, stages: plan.map((s) => ({ name: s.name, command: formatCommand(s.argv), ...(s.skipped ? { skipped: s.skipped } : {}) })) };
      emitResult(argv, result, (r) => [`${r.name}${r.smoke ? ' (smoke)' : ''}: ${r.stages.length} stages`, ...r.stages.map((s, i) => `${String(i + 1).padStart(3)}. ${s.name}${s.skipped ? ` [skipped: ${s.skipped}]` : ''}\n     ${s.command}`)].join('\n'));
      return;
    }
    const result = await runPipeline(spec, options);
    emitResult(argv, result, render);
  },
};
