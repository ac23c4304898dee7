#!/usr/bin/env node
// Idempotent setup behind `npm test`, `npm run demo`, `npm run bench` and `npm run build`:
//   1. npm dependencies       (npm ci when package.json / package-lock.json changed)
//   2. LibTorch               (found by scripts/libtorch.mjs; installed from Debian when running as
//                              root on Debian, else one message with the exact commands)
//   3. system packages        (--test / --bench: the tools those suites compare against)
//   4. the native addon       (cmake-js, only when native sources, LibTorch or versions changed)
//   5. TypeScript -> dist/    (tsc, only when sources changed)
// A second run with nothing changed does nothing and prints nothing with --quiet.
//
// Environment: PNEUMO_BUILD_DIR builds the addon into another folder than build/ (load it with
// PNEUMO_NATIVE_BINARY=<folder>/Release/pneumo_native.node).
// Flags: --quiet, --native-only, --force-build, --install-hook (npm's install script for
// consumers: skip when a prebuilt binary loads), --test, --bench.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEBIAN_INSTALL, findLibTorch, missingLibTorchMessage } from './libtorch.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const args = new Set(process.argv.slice(2));
const quiet = args.has('--quiet');
const force = args.has('--force-build');

/** Debian packages the native build uses besides LibTorch (libjpeg-turbo for batch decoding). */
const BUILD_PACKAGES = ['libturbojpeg0-dev'];
/**
 * Debian packages the test suite compares against: an independent DICOM toolkit, and Python
 * PyTorch (run as /usr/bin/python3) as the reference for models, losses and optimizers.
 */
const TEST_PACKAGES = ['dcmtk', 'python3-torch', 'python3-torchvision', 'python3-numpy', 'python3-opencv'];
/** Debian packages the benchmarks use as baselines (Python PyTorch and the Python data stack). */
const BENCH_PACKAGES = ['python3-torch', 'python3-torchvision', 'python3-numpy', 'python3-pydicom', 'python3-pil', 'python3-opencv'];

function log(message) {
  process.stderr.write(`pneumo-native setup: ${message}\n`);
}

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

function run(cmd, argv, options = {}) {
  const result = spawnSync(cmd, argv, { cwd: root, stdio: quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit', ...options });
  if (result.error) fail(`pneumo-native setup: could not run ${cmd}: ${result.error.message}`);
  if (result.status !== 0) {
    if (quiet) process.stderr.write(`${result.stdout ?? ''}${result.stderr ?? ''}`);
    fail(`pneumo-native setup: \`${[cmd, ...argv].join(' ')}\` failed with exit code ${result.status}`);
  }
  return result;
}

function hashFiles(files, extra = []) {
  const hash = createHash('sha256');
  for (const file of [...files].sort()) {
    hash.update(relative(root, file));
    hash.update(readFileSync(file));
  }
  for (const e of extra) hash.update(String(e));
  return hash.digest('hex');
}

function listFiles(dir, test) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(path, test));
    else if (test(path)) out.push(path);
  }
  return out;
}

function readStamp(file) {
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
}

function writeStamp(file, value) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${value}\n`);
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const isDebian = existsSync('/etc/debian_version');

function dpkgInstalled(pkg) {
  try {
    const out = execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.includes('install ok installed');
  } catch {
    return false;
  }
}

let aptUpdated = false;
/** Installs missing Debian packages as root; otherwise stops with the exact command to run. */
function ensureDebianPackages(packages, purpose) {
  const missing = packages.filter((p) => !dpkgInstalled(p));
  if (missing.length === 0) return;
  const command = `apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (!isDebian || !isRoot) {
    fail(`pneumo-native setup: ${purpose} needs these Debian packages: ${missing.join(', ')}.\nInstall them (as root) with:\n  apt-get update\n  ${command}`);
  }
  log(`installing ${missing.join(', ')} (${purpose}) with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    run('apt-get', ['update', '-qq'], { env });
    aptUpdated = true;
  }
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env });
}

// ---- 1. npm dependencies ----------------------------------------------------------------------

function ensureDependencies() {
  const lock = join(root, 'package-lock.json');
  const stampFile = join(root, 'node_modules', '.pneumo-deps-stamp');
  const stamp = hashFiles([join(root, 'package.json'), ...(existsSync(lock) ? [lock] : [])], [process.version]);
  if (!force && readStamp(stampFile) === stamp && existsSync(join(root, 'node_modules', 'node-addon-api'))) return;
  log(existsSync(lock) ? 'installing npm dependencies (npm ci)' : 'installing npm dependencies (npm install)');
  run('npm', [existsSync(lock) ? 'ci' : 'install', '--no-audit', '--no-fund'], {
    env: { ...process.env, PNEUMO_SETUP_ACTIVE: '1' },
  });
  writeStamp(stampFile, stamp);
}

// ---- 2. LibTorch ------------------------------------------------------------------------------

function ensureLibTorch() {
  let found;
  try {
    found = findLibTorch();
  } catch (err) {
    fail(`pneumo-native setup: ${err.message}`);
  }
  if (!found) {
    if (!isDebian || !isRoot) fail(missingLibTorchMessage(!isDebian ? 'not Debian: install LibTorch yourself' : 'not root: cannot install it'));
    log(`LibTorch not found: installing Debian's libtorch-dev (${DEBIAN_INSTALL.join(' && ')})`);
    ensureDebianPackages(['libtorch-dev', 'libopenblas0-pthread', ...BUILD_PACKAGES], 'LibTorch');
    found = findLibTorch();
    if (!found) fail(missingLibTorchMessage('libtorch-dev was installed but TorchConfig.cmake is still missing'));
  } else if (found.source === 'debian libtorch-dev' && !dpkgInstalled('libopenblas0-pthread')) {
    // Debian's LibTorch otherwise runs matmuls on the slow reference BLAS.
    if (isRoot) ensureDebianPackages(['libopenblas0-pthread'], 'a fast BLAS for LibTorch');
    else log('warning: libopenblas0-pthread is not installed, so matmuls use the slow reference BLAS');
  }
  // libjpeg-turbo is optional (without it JPEG decoding stays in sharp): install it where we can.
  if (isDebian && isRoot) ensureDebianPackages(BUILD_PACKAGES, 'native JPEG decoding');
  else if (isDebian && BUILD_PACKAGES.some((p) => !dpkgInstalled(p))) log(`note: ${BUILD_PACKAGES.join(', ')} not installed: native JPEG batch decoding will be disabled`);
  return found;
}

// ---- 4. native addon ----------------------------------------------------------------------------

function nativeStamp(torch) {
  const sources = [
    ...listFiles(join(root, 'native'), (p) => /\.(cc|cpp|h|hpp|cu|cuh)$/.test(p)),
    join(root, 'CMakeLists.txt'),
    join(root, 'package.json'),
  ];
  return hashFiles(sources, [torch.cmakeDir, torch.version ?? '', process.version, BUILD_PACKAGES.map(dpkgInstalled).join()]);
}

/** Build folder: build/ unless $PNEUMO_BUILD_DIR (lets two developers build side by side). */
const buildDir = process.env.PNEUMO_BUILD_DIR ? join(root, process.env.PNEUMO_BUILD_DIR) : join(root, 'build');

function ensureNative(torch) {
  const binary = join(buildDir, 'Release', 'pneumo_native.node');
  const stampFile = join(buildDir, 'Release', '.pneumo-stamp');
  const stamp = nativeStamp(torch);
  if (!force && existsSync(binary) && readStamp(stampFile) === stamp) return;
  const jobs = Math.max(1, availableParallelism());
  log(`building the native addon against LibTorch ${torch.version ?? ''} (${torch.source}) with ${jobs} jobs`);
  const started = Date.now();
  const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
  run(process.execPath, [cmakeJs, 'compile', '--out', buildDir, '--parallel', String(jobs), `--CDTorch_DIR=${torch.cmakeDir}`, ...(quiet ? ['--log-level', 'warn'] : [])]);
  writeStamp(stampFile, stamp);
  log(`native addon built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

// ---- 5. TypeScript ------------------------------------------------------------------------------

function ensureTypeScript() {
  const stampFile = join(root, 'dist', '.pneumo-stamp');
  const sources = [...listFiles(join(root, 'src'), (p) => p.endsWith('.ts')), join(root, 'tsconfig.json'), join(root, 'package.json')];
  const stamp = hashFiles(sources);
  if (!force && readStamp(stampFile) === stamp && existsSync(join(root, 'dist', 'index.js'))) return;
  log('compiling TypeScript (tsc)');
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')]);
  writeStamp(stampFile, stamp);
}

function prebuiltLoads() {
  try {
    const require = createRequire(import.meta.url);
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

// ---- main -----------------------------------------------------------------------------------------

if (process.env.PNEUMO_SETUP_ACTIVE === '1') process.exit(0); // npm ci's own install hook, inside setup
process.env.PNEUMO_SETUP_ACTIVE = '1';

if (args.has('--install-hook')) {
  // Installed as a dependency: dependencies are npm's job; use a prebuild when one loads.
  if (!prebuiltLoads()) ensureNative(ensureLibTorch());
  process.exit(0);
}

const started = Date.now();
ensureDependencies();
const torch = ensureLibTorch();
if (args.has('--test')) ensureDebianPackages(TEST_PACKAGES, 'the test suite');
if (args.has('--bench')) ensureDebianPackages(BENCH_PACKAGES, 'the benchmark baselines');
ensureNative(torch);
if (!args.has('--native-only')) ensureTypeScript();
if (!quiet) log(`ready (${((Date.now() - started) / 1000).toFixed(1)} s)`);

