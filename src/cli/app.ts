/**
 * The command-line application: one yargs instance, one command module per file under
 * `commands/`. Every command that prints results accepts `--json` (see `output.ts`).
 */
import yargs from 'yargs';
import type { Argv } from 'yargs';
import { commands } from './commands/index.js';
import { CliError, describeError } from './output.js';
import { packageVersion } from '../core/package-info.js';

/** Builds the yargs parser with every command registered (exported for tests). */
export function buildCli(argv: string[]): Argv {
  let cli = yargs(argv)
    .scriptName('pneumo-native')
    .usage('$0 <command> [options]\n\nPneumothorax segmentation on chest X-rays (SIIM-ACR), natively on LibTorch.')
    .version(packageVersion())
    .strict()
    .demandCommand(1, 'Name a command: see the list above.')
    .recommendCommands()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .help()
    .alias('h', 'help')
    .fail((msg, err) => {
      if (err) throw err;
      // yargs' suggestion alone ("Did you mean train?") does not say what was typed.
      const typed = argv.find((a) => !a.startsWith('-'));
      if (/^Did you mean/.test(msg) && typed !== undefined) throw new CliError(`Unknown command '${typed}'. ${msg}`, 2);
      throw new CliError(msg, 2);
    });
  for (const command of commands) cli = cli.command(command);
  return cli;
}

/** Runs the CLI and returns the process exit code; errors are printed to stderr, never thrown. */
export async function runCli(argv: string[]): Promise<number> {
  try {
    await buildCli(argv).parseAsync();
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    const { message, exitCode } = describeError(err);
    process.stderr.write(`pneumo-native: ${message}\n`);
    if (exitCode === 2) process.stderr.write('Run `pneumo-native --help` for usage.\n');
    return exitCode;
  }
}
