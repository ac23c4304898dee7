/**
 * `pneumo-native build`: builds the native addon inside the installed package (after an install
 * with --ignore-scripts, under pnpm or npm's allowScripts, or after LibTorch changed). It runs the
 * package's own scripts/setup.mjs in its dependency mode, the same code as the install hook and
 * `npm rebuild pneumo-native`: the same LibTorch discovery (LIBTORCH, Torch_DIR, Python's torch,
 * Debian libtorch-dev), cmake-js found through Node's module resolution, the compiler's progress
 * on stderr, and no apt-get unless PNEUMO_INSTALL_SYSTEM_DEPS=1.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { packageRoot } from '../../core/package-info.js';
import { CliError } from '../output.js';

interface BuildArgs {
  force: boolean;
  quiet: boolean;
}

/** Runs setup.mjs --addon in the package root; resolves with its exit code. */
function runSetup(root: string, argv: string[]): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    // PNEUMO_SETUP_ACTIVE makes setup a no-op (it guards setup's own npm ci): never pass it on.
    const env = { ...process.env };
    delete env.PNEUMO_SETUP_ACTIVE;
    const child = spawn(process.execPath, [join(root, 'scripts', 'setup.mjs'), '--addon', ...argv], { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise(code ?? (signal ? 128 : 1)));
  });
}

export const buildCommand: CommandModule<object, BuildArgs> = {
  command: 'build',
  describe: 'Build the native addon where pneumo-native is installed (after --ignore-scripts, or when LibTorch changed)',
  builder: (y) =>
    y
      .option('force', { type: 'boolean', default: false, describe: 'Rebuild even when the addon is up to date for this LibTorch and Node' })
      .option('quiet', { type: 'boolean', default: false, describe: "Show only warnings and errors (not cmake's and the compiler's progress)" })
      .epilogue(
        'LibTorch is found as the install script finds it: $LIBTORCH (an unzipped libtorch/ folder), $Torch_DIR (a folder holding TorchConfig.cmake), ' +
          "Python's torch (python3), Debian's libtorch-dev. The addon is written to <package>/build/Release. apt-get is never run unless " +
          'PNEUMO_INSTALL_SYSTEM_DEPS=1 (as root on Debian).',
      ),
  handler: async (argv) => {
    const root = packageRoot();
    const setup = join(root, 'scripts', 'setup.mjs');
    if (!existsSync(setup)) throw new CliError(`pneumo-native build: ${setup} is missing: this installation of pneumo-native is incomplete; reinstall it.`, 1);
    const code = await runSetup(root, [...(argv.force ? ['--force-build'] : []), ...(argv.quiet ? ['--quiet'] : [])]);
    if (code !== 0) throw new CliError(`pneumo-native build: the build failed (exit code ${code}); the reason is above.`, code);
  },
};
