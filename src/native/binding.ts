/**
 * The TypeScript side of the N-API boundary: the loader that finds the compiled addon, and
 * `NativeBinding`, the shape of everything it exports, made of one interface per slice
 * (src/native/<concept>.ts, the counterpart of native/binding/<concept>.cc). Nothing else in the
 * package touches the addon object directly; keep each slice's types and its .cc in step.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join } from 'node:path';
import { packageRoot, packageVersion } from '../core/package-info.js';
import type { AugmentBinding } from './augment.js';
import type { DataBinding } from './data.js';
import type { DistributedBinding } from './distributed.js';
import type { ModelBinding } from './model.js';
import type { RuntimeBinding } from './runtime.js';
import type { ScoringBinding } from './scoring.js';
import type { NativeStoreBinding } from './store.js';
import type { SwaBinding } from './swa.js';
import type { TensorBinding } from './tensor.js';
import type { TrainBinding } from './train.js';

export type * from './augment.js';
export type * from './data.js';
export type * from './distributed.js';
export type * from './model.js';
export type * from './runtime.js';
export type * from './scoring.js';
export type * from './store.js';
export type * from './swa.js';
export type * from './tensor.js';
export type * from './train.js';

/** Everything the addon exports (native/binding/init.cc registers every slice). */
export interface NativeBinding extends TensorBinding, RuntimeBinding, DataBinding, AugmentBinding, TrainBinding, ModelBinding, SwaBinding, ScoringBinding, NativeStoreBinding, DistributedBinding {
  version: string;
  napiVersion: number;
}

/** Thrown when the compiled addon cannot be loaded; the message names the cause and the fix. */
export class NativeLoadError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'NativeLoadError';
  }
}

/** What the loader's message says about LibTorch on this machine now. */
export interface LibTorchStatus {
  found: boolean;
  /** `LibTorch 1.13.1 (debian libtorch-dev) at /usr/lib/.../cmake/Torch`, or why none was found. */
  description: string;
}

/**
 * Runs the package's LibTorch discovery (scripts/libtorch.mjs, the same one the build uses) in a
 * child process: only on the error path, so the seconds Python's torch may take to import are spent
 * only when the addon did not load.
 */
export function discoverLibTorch(): LibTorchStatus {
  let script: string;
  try {
    script = join(packageRoot(), 'scripts', 'libtorch.mjs');
  } catch {
    return { found: false, description: 'not checked (package root not found)' };
  }
  if (!existsSync(script)) return { found: false, description: `not checked (${script} is missing)` };
  const r = spawnSync(process.execPath, [script, '--json'], { encoding: 'utf8', timeout: 120_000 });
  if (r.status === 0) {
    try {
      const t = JSON.parse(r.stdout) as { source: string; cmakeDir: string; version?: string };
      return { found: true, description: `found, LibTorch ${t.version ?? '(version unknown)'} (${t.source}) at ${t.cmakeDir}` };
    } catch {
      // fall through
    }
  }
  const first = (r.stderr || r.error?.message || '').trim().split('\n')[0] || `discovery exited with ${r.status}`;
  return { found: false, description: `not found: ${first.replace(/^pneumo-native: /, '')}` };
}

/**
 * The command that builds the addon where it is: `npm run build:native` in a clone of this
 * repository, `npx pneumo-native build` where it is installed as a dependency.
 */
export function buildCommand(root: string): string {
  return existsSync(join(root, 'src', 'index.ts')) && existsSync(join(root, 'tsconfig.json')) ? 'npm run build:native' : 'npx pneumo-native build';
}

/** The lines naming LibTorch's state and the fix (the build command, LIBTORCH / Torch_DIR). */
function fixLines(root: string, torch: LibTorchStatus, what = 'build it'): string[] {
  const cmd = buildCommand(root);
  const alt = cmd === 'npx pneumo-native build' ? ' (or `npm rebuild pneumo-native`)' : '';
  if (torch.found) {
    return [
      `LibTorch: ${torch.description}.`,
      `Fix: ${what} with \`${cmd}\`${alt}. To use another LibTorch, set LIBTORCH=<an unzipped libtorch/ folder> or Torch_DIR=<the folder holding TorchConfig.cmake> first.`,
    ];
  }
  return [
    `LibTorch: ${torch.description}.`,
    'Fix: install LibTorch (Debian/Ubuntu, as root: `apt-get update && apt-get install -y --no-install-recommends libtorch-dev libopenblas0-pthread`),',
    'or set LIBTORCH=<an unzipped libtorch/ folder> or Torch_DIR=<the folder holding TorchConfig.cmake>,',
    `then ${what} with \`${cmd}\`${alt}.`,
  ];
}

/**
 * Explains a failure to load the addon: which of the known causes it is, whether LibTorch is found
 * now (and where), and the exact command to run. Exported for tests (which inject `libtorch`);
 * `loadBinding` throws what this returns.
 */
export function explainLoadError(err: unknown, root: string, libtorch: () => LibTorchStatus = discoverLibTorch): NativeLoadError {
  const detail = err instanceof Error ? err.message : String(err);
  const lines = ['pneumo-native could not load its native addon.'];
  if (/No native build was found/i.test(detail)) {
    lines.push(
      `Cause: no compiled addon in ${join(root, 'build', 'Release')} or ${join(root, 'prebuilds')} (installed with --ignore-scripts, or its install script was skipped or failed: pnpm and npm's allowScripts skip dependencies' build scripts unless allowed).`,
      ...fixLines(root, libtorch()),
    );
  } else if (/Cannot find module/i.test(detail) && process.env.PNEUMO_NATIVE_BINARY) {
    lines.push(`Cause: $PNEUMO_NATIVE_BINARY=${process.env.PNEUMO_NATIVE_BINARY} does not exist.`, 'Fix: build it (PNEUMO_BUILD_DIR=<folder> npm run build:native) or unset the variable.');
  } else if (/lib(torch|c10|torch_cpu|gomp)[^:]*\.so[^:]*: cannot open shared object file/i.test(detail)) {
    const lib = /(lib[\w.+-]*\.so[\w.]*)/.exec(detail)?.[1] ?? 'a LibTorch library';
    lines.push(`Cause: the LibTorch the addon was built against is gone (moved, upgraded or uninstalled): ${lib} cannot be opened.`, ...fixLines(root, libtorch(), 'rebuild it against the LibTorch you have now'));
  } else if (/undefined symbol/i.test(detail)) {
    lines.push('Cause: the addon was built against a different LibTorch than the one installed now.', ...fixLines(root, libtorch(), 'rebuild it'));
  } else if (/NODE_MODULE_VERSION|did not self-register|napi/i.test(detail)) {
    lines.push(`Cause: the addon was built for another Node.js (this is Node ${process.versions.node}).`, `Fix: rebuild it with \`${buildCommand(root)}\`.`);
  } else if (/wrong ELF class|invalid ELF header|cannot open shared object/i.test(detail)) {
    lines.push('Cause: the binary is not for this platform or a library it needs is missing.', ...fixLines(root, libtorch(), 'rebuild it'));
  } else {
    lines.push(`Cause: ${detail.split('\n')[0]}`, ...fixLines(root, libtorch()));
  }
  lines.push(`Details: ${detail.split('\n')[0]}`);
  return new NativeLoadError(lines.join('\n'), err);
}

let cached: NativeBinding | undefined;

/**
 * Loads the addon once (from `build/Release` or `prebuilds/` via node-gyp-build, or the file named
 * by $PNEUMO_NATIVE_BINARY), checks that it matches this package version, and returns it. Throws
 * NativeLoadError with the fix otherwise.
 */
export function loadBinding(root: string = packageRoot()): NativeBinding {
  if (cached && root === packageRoot()) return cached;
  const require = createRequire(import.meta.url);
  let binding: NativeBinding;
  try {
    const explicit = process.env.PNEUMO_NATIVE_BINARY;
    if (explicit && root === packageRoot()) {
      binding = require(isAbsolute(explicit) ? explicit : join(root, explicit)) as NativeBinding;
    } else {
      const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
      binding = nodeGypBuild(root) as NativeBinding;
    }
  } catch (err) {
    throw explainLoadError(err, root);
  }
  const expected = packageVersion();
  if (binding.version !== expected) {
    throw new NativeLoadError(
      [
        'pneumo-native could not load its native addon.',
        `Cause: the compiled addon is version ${binding.version} but the package is ${expected} (a stale build).`,
        `Fix: rebuild it with \`${buildCommand(root)}\`.`,
      ].join('\n'),
    );
  }
  if (root === packageRoot()) cached = binding;
  return binding;
}
