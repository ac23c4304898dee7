#!/usr/bin/env node
// `npm run gpu-check` (or `node scripts/gpu-check.mjs` where there is no npm): checks a GPU machine
// end to end, offline, with only a Node binary and this tree with its node_modules:
//   1. finds a CUDA LibTorch ($LIBTORCH, $Torch_DIR, or Python's torch) and builds the addon
//      against it into build-gpu/ (cmake-js, all cores);
//   2. loads it and reports LibTorch, CUDA, cuDNN and the devices;
//   3. runs the CUDA tests (test/gpu/*.test.ts: losses, every architecture, training vs CPU,
//      determinism, the gradient scaler, checkpoints across devices, TorchScript, the Segmenter);
//   4. runs the GPU benchmarks (bench/gpu.bench.mjs) against eager PyTorch on the same GPU;
// then prints one JSON summary on stdout (progress on stderr). Exit code 0 when the build and
// every test passed.
//
// Flags: --no-bench, --no-tests, --out FILE (also write the JSON there), --build-dir DIR
// (default build-gpu). Budget: about 8 minutes on 16 cores (build ~1 min, tests ~2, bench ~4).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findLibTorch, missingLibTorchMessage } from './libtorch.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const KNOWN = new Set(['--no-bench', '--no-tests', '--out', '--build-dir']);
for (const [i, a] of args.entries()) {
  if (a.startsWith('--') && !KNOWN.has(a)) {
    process.stderr.write(`gpu-check: unknown option ${a} (known: ${[...KNOWN].join(', ')})\n`);
    process.exit(2);
  }
  if ((a === '--out' || a === '--build-dir') && (args[i + 1] === undefined || args[i + 1].startsWith('--'))) {
    process.stderr.write(`gpu-check: ${a} needs a path\n`);
    process.exit(2);
  }
}
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const buildDir = resolve(root, option('--build-dir', 'build-gpu'));
const binary = join(buildDir, 'Release', 'pneumo_native.node');
const summary = { ok: false, started: new Date().toISOString(), build: null, runtime: null, tests: null, bench: null, seconds: 0 };
const t0 = Date.now();

function log(message) {
  process.stderr.write(`gpu-check: ${message}\n`);
}

function finish(code) {
  summary.seconds = Math.round((Date.now() - t0) / 1000);
  const text = `${JSON.stringify(summary, null, 2)}\n`;
  process.stdout.write(text);
  const out = option('--out');
  if (out) writeFileSync(out, text);
  process.exit(code);
}

/** Runs a child, streaming its output to stderr as progress, and keeps what it printed. */
function step(name, cmd, argv, env = {}, { echoStdout = true } = {}) {
  log(`${name}: ${[cmd, ...argv].join(' ')}`);
  const started = Date.now();
  return new Promise((resolveStep) => {
    const child = spawn(cmd, argv, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      if (echoStdout) process.stderr.write(d);
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      process.stderr.write(d);
    });
    child.on('error', (err) => resolveStep({ status: -1, stdout, stderr: `${stderr}${err.message}`, seconds: (Date.now() - started) / 1000 }));
    child.on('close', (status) => resolveStep({ status, stdout, stderr, seconds: (Date.now() - started) / 1000 }));
  });
}

// ---- 1. LibTorch and the build --------------------------------------------------------------
let torch;
try {
  torch = findLibTorch();
} catch (err) {
  summary.build = { ok: false, error: err.message };
  finish(1);
}
if (!torch) {
  summary.build = { ok: false, error: missingLibTorchMessage('gpu-check needs a CUDA LibTorch: set LIBTORCH or Torch_DIR, or make a CUDA torch importable by python3') };
  finish(1);
}
log(`LibTorch ${torch.version ?? '?'} from ${torch.source} (${torch.cmakeDir})`);
const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
mkdirSync(buildDir, { recursive: true });
const build = await step('build', process.execPath, [cmakeJs, 'compile', '--out', buildDir, '--parallel', String(availableParallelism()), `--CDTorch_DIR=${torch.cmakeDir}`]);
const cmakeOut = `${build.stdout ?? ''}`;
summary.build = {
  ok: build.status === 0 && existsSync(binary),
  seconds: Math.round(build.seconds),
  libtorch: { version: torch.version ?? null, source: torch.source },
  cudaKernels: /pneumo-native CUDA kernels: ON/.test(cmakeOut) || null,
  architectures: /pneumo-native CUDA architectures: (.*)/.exec(cmakeOut)?.[1]?.trim() ?? null,
  binary,
};
if (!summary.build.ok) {
  summary.build.error = `${cmakeOut}${build.stderr ?? ''}`.split('\n').filter((l) => /error|Error|FAILED/.test(l)).slice(0, 30);
  finish(1);
}
const env = { PNEUMO_NATIVE_BINARY: binary };

// ---- 2. runtime report ------------------------------------------------------------------------
if (!existsSync(join(root, 'dist', 'index.js'))) {
  const tsc = (() => {
    try {
      return require.resolve('typescript/bin/tsc');
    } catch {
      return null;
    }
  })();
  if (!tsc) {
    summary.runtime = { ok: false, error: 'dist/ is missing and TypeScript is not installed: build dist/ elsewhere (npm run build:ts) and copy it here' };
    finish(1);
  }
  await step('tsc', process.execPath, [tsc, '-p', join(root, 'tsconfig.json')]);
}
const info = await step('info', process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'info', '--json'], env, { echoStdout: false });
try {
  summary.runtime = JSON.parse(info.stdout);
} catch {
  summary.runtime = { ok: false, error: (info.stderr ?? '').slice(-2000) };
  finish(1);
}
summary.build.cudaKernels = summary.runtime.libtorch?.builtWithCuda ?? summary.build.cudaKernels;
if (!summary.runtime.cuda?.available) log('warning: the addon loads but sees no CUDA device; the CUDA tests and benchmarks will skip');

// ---- 3. CUDA tests ----------------------------------------------------------------------------
let testsOk = true;
if (!flag('--no-tests')) {
  const report = join(tmpdir(), `pneumo-gpu-tests-${process.pid}.json`);
  const vitest = (() => {
    try {
      return join(dirname(require.resolve('vitest/package.json')), 'vitest.mjs');
    } catch {
      return null;
    }
  })();
  if (!vitest) {
    summary.tests = { ok: false, error: 'vitest is not installed (install the dev dependencies: npm ci)' };
    testsOk = false;
  } else {
    const r = await step('tests', process.execPath, [vitest, 'run', 'test/gpu', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`], env);
    try {
      const j = JSON.parse(readFileSync(report, 'utf8'));
      const failures = [];
      for (const file of j.testResults ?? []) {
        for (const t of file.assertionResults ?? []) {
          if (t.status === 'failed') failures.push({ test: t.fullName, message: (t.failureMessages ?? []).join('\n').split('\n').slice(0, 6).join('\n') });
        }
      }
      summary.tests = { ok: j.numFailedTests === 0 && j.numPassedTests > 0, passed: j.numPassedTests, failed: j.numFailedTests, skipped: j.numPendingTests + (j.numTodoTests ?? 0), seconds: Math.round(r.seconds), failures };
    } catch (err) {
      summary.tests = { ok: false, error: `no test report (${err.message}); exit ${r.status}`, output: (r.stdout ?? '').slice(-3000) };
    }
    testsOk = summary.tests.ok;
  }
}

// ---- 4. GPU benchmarks ------------------------------------------------------------------------
if (!flag('--no-bench')) {
  const r = await step('bench', process.execPath, [join(root, 'bench', 'run.mjs'), 'gpu'], env);
  try {
    const latest = JSON.parse(readFileSync(join(root, 'bench', 'results', 'latest.json'), 'utf8'));
    const results = (latest.results ?? latest).filter?.((e) => e.bench === 'gpu' || /^gpu/.test(e.group ?? '')) ?? latest;
    summary.bench = {
      seconds: Math.round(r.seconds),
      entries: results.map((e) => ({ name: e.name, value: e.value, unit: e.unit, baseline: e.baseline?.value ?? null, ratio: e.ratio ?? null, goal: e.goal ?? null, notes: e.notes })),
    };
  } catch (err) {
    summary.bench = { error: `no bench results (${err.message}); exit ${r.status}` };
  }
}

summary.ok = summary.build.ok && testsOk;
finish(summary.ok ? 0 : 1);
