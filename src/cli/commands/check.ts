/**
 * `pneumo-native check`: a one-minute check of this machine: the native runtime (the `info`
 * report) and a smoke forward/backward/SGD pass proving LibTorch trains here. `demo` runs the
 * whole pipeline.
 */
import type { CommandModule } from 'yargs';
import { runtimeReport, smokeTrain } from '../../core/runtime.js';
import type { RuntimeReport } from '../../core/runtime.js';
import type { NativeSmokeResult } from '../../native/binding.js';
import { CliError, emitResult, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';

interface CheckArgs extends JsonOption {
  device?: string;
  steps: number;
  size: number;
  batch: number;
  seed: number;
}

interface CheckResult {
  runtime: RuntimeReport;
  smoke: NativeSmokeResult & { lossDrop: number };
}

export const checkCommand: CommandModule<object, CheckArgs> = {
  command: 'check',
  describe: 'Check this machine end to end: the runtime report and a smoke training pass on LibTorch',
  builder: (y) =>
    y
      .options(jsonOption)
      .option('device', { type: 'string', describe: 'cpu, cuda or cuda:N (default: GPU when available)' })
      .option('steps', { type: 'number', default: 30, describe: 'SGD steps of the smoke pass' })
      .option('size', { type: 'number', default: 128, describe: 'Image size of the smoke pass' })
      .option('batch', { type: 'number', default: 4, describe: 'Batch size of the smoke pass' })
      .option('seed', { type: 'number', default: 42, describe: 'Random seed' }),
  handler: async (argv) => {
    const runtime = await runtimeReport();
    logLine(`check: LibTorch ${runtime.libtorch.version} on ${runtime.defaultDevice}, ${runtime.threads.intraOp} threads, BLAS ${runtime.blas.name}`);
    logLine(`check: smoke training pass, ${argv.steps} steps of batch ${argv.batch} at ${argv.size}x${argv.size}...`);
    const smoke = await smokeTrain({ batch: argv.batch, size: argv.size, steps: argv.steps, seed: argv.seed, ...(argv.device ? { device: argv.device } : {}) });
    const first = smoke.losses[0] ?? NaN;
    const last = smoke.losses.at(-1) ?? NaN;
    const result: CheckResult = { runtime, smoke: { ...smoke, lossDrop: first - last } };
    if (!smoke.gradientsFinite || !(last < first)) {
      throw new CliError(`check: the smoke pass did not train (loss ${first.toFixed(4)} -> ${last.toFixed(4)}, finite gradients: ${smoke.gradientsFinite})`);
    }
    emitResult(argv, result, (r) =>
      [
        `LibTorch ${r.runtime.libtorch.version} on ${r.smoke.device} (${r.runtime.threads.intraOp} threads, ${r.runtime.blas.name})`,
        `smoke pass: ${r.smoke.parameters} parameters, loss ${first.toFixed(4)} -> ${last.toFixed(4)} in ${r.smoke.losses.length} steps, ${r.smoke.msPerStep.toFixed(1)} ms/step`,
        'OK: forward, backward and optimizer steps work on this machine.',
      ].join('\n'),
    );
  },
};
