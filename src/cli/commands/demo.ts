/**
 * `pneumo-native demo`: the first command a newcomer runs (`npm run demo`). It checks the native
 * runtime (the `info` report) and proves LibTorch trains here with a smoke forward/backward pass.
 * It grows into the full pipeline demo (synth -> prepare -> folds -> train -> infer -> submit).
 */
import type { CommandModule } from 'yargs';
import { runtimeReport, smokeTrain } from '../../core/runtime.js';
import type { RuntimeReport } from '../../core/runtime.js';
import type { NativeSmokeResult } from '../../native/binding.js';
import { CliError, emitResult, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';

interface DemoArgs extends JsonOption {
  device?: string;
  steps: number;
  size: number;
  batch: number;
  seed: number;
}

interface DemoResult {
  runtime: RuntimeReport;
  smoke: NativeSmokeResult & { lossDrop: number };
}

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
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
    logLine(`demo: LibTorch ${runtime.libtorch.version} on ${runtime.defaultDevice}, ${runtime.threads.intraOp} threads, BLAS ${runtime.blas.name}`);
    logLine(`demo: smoke training pass, ${argv.steps} steps of batch ${argv.batch} at ${argv.size}x${argv.size}...`);
    const smoke = await smokeTrain({ batch: argv.batch, size: argv.size, steps: argv.steps, seed: argv.seed, ...(argv.device ? { device: argv.device } : {}) });
    const first = smoke.losses[0] ?? NaN;
    const last = smoke.losses.at(-1) ?? NaN;
    const result: DemoResult = { runtime, smoke: { ...smoke, lossDrop: first - last } };
    if (!smoke.gradientsFinite || !(last < first)) {
      throw new CliError(`demo: the smoke pass did not train (loss ${first.toFixed(4)} -> ${last.toFixed(4)}, finite gradients: ${smoke.gradientsFinite})`);
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
