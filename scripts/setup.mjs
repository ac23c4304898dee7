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
// Installed as a dependency of another project (npm's `install` hook, `npm rebuild pneumo-native`,
// `npx pneumo-native build`), only step 4 runs, and it never runs apt-get unless
// PNEUMO_INSTALL_SYSTEM_DEPS=1: it builds against the LibTorch it finds or stops with the exact
// commands that install one. Every tool and header is found through Node's module resolution from
// this package (scripts/libtorch.mjs), so hoisted, nested, pnpm and yarn layouts all build.
// Optional system packages (libturbojpeg0-dev) never fail setup: a missing one is named with what
// it costs.
//
// Environment: PNEUMO_BUILD_DIR builds the addon into another folder than build/ (load it with
// PNEUMO_NATIVE_BINARY=<folder>/Release/pneumo_native.node). PNEUMO_INSTALL_SYSTEM_DEPS=1 lets a
// dependency install run apt-get (as root on Debian); =0 stops this project's own setup from
// running it.
// Flags: --quiet, --native-only, --force-build, --test, --bench, --dry-run (LibTorch and system
// packages as the mode allows, then say whether the addon would be built; build nothing); --install-hook (npm's install
// script: skip when a prebuilt binary loads or in a source checkout), --addon (build the addon of an
// installed package: `pneumo-native build`), --prepare (npm's prepare script: compile TypeScript).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEBIAN_INSTALL, findLibTorch, missingLibTorchMessage, resolveBin, resolvePackageDir, turboJpeg, libPng } from './libtorch.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const args = new Set(process.argv.slice(2));
const quiet = args.has('--quiet');
const force = args.has('--force-build');
/** --dry-run: find LibTorch and the optional packages (apt-get as the mode allows), build nothing. */
const dryRun = args.has('--dry-run');
/**
 * Dependency mode: this package is installed in another project (the install hook, `--addon`).
 * Only the addon is built, with no apt-get unless PNEUMO_INSTALL_SYSTEM_DEPS=1.
 */
const dependencyMode = args.has('--install-hook') || args.has('--addon');
/** The command that builds the addon again, as the person reading a message would type it. */
const rebuildCommand = dependencyMode ? 'npx pneumo-native build' : 'npm run build';

/** Debian packages the native build uses besides LibTorch (libjpeg-turbo and libpng for batch decoding; gloo's headers for c10d's ProcessGroupGloo: distributed training). */
const BUILD_PACKAGES = ['libturbojpeg0-dev', 'libpng-dev', 'libgloo-dev'];
/** What building without each optional package costs (named when it is missing). */
const OPTIONAL_COST = {
  'libturbojpeg0-dev': 'native JPEG decoding off (JPEGs and JPEG DICOMs are decoded in JavaScript through sharp and dcmjs instead of by libjpeg-turbo on the native thread pool)',
  'libpng-dev': 'native PNG decoding off (prepared PNG folders are decoded in JavaScript through sharp instead of by libpng on the native thread pool)',
  'libgloo-dev': 'distributed training (train --nproc, torchrun) off: the addon is built without c10d ProcessGroupGloo',
};
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
const systemDepsEnv = process.env.PNEUMO_INSTALL_SYSTEM_DEPS;
/**
 * Whether setup may run apt-get: root on Debian, and for an install as a dependency only when
 * PNEUMO_INSTALL_SYSTEM_DEPS=1 (a library's install hook installing system packages surprises,
 * and fails on machines without network); this project's own setup unless it is 0.
 */
const aptAllowed = isRoot && isDebian && (dependencyMode ? systemDepsEnv === '1' : systemDepsEnv !== '0');

/** Why apt-get is not run here, for messages. */
function whyNoApt() {
  if (!isDebian) return 'not Debian: install it yourself';
  if (!isRoot) return 'not root: cannot install it';
  if (dependencyMode && systemDepsEnv !== '1') return 'an install as a dependency never runs apt-get; PNEUMO_INSTALL_SYSTEM_DEPS=1 lets it, as root';
  return 'PNEUMO_INSTALL_SYSTEM_DEPS=0';
}

function dpkgInstalled(pkg) {
  try {
    const out = execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.includes('install ok installed');
  } catch {
    return false;
  }
}

const aptCommand = (packages) => `apt-get install -y --no-install-recommends ${packages.join(' ')}`;
/** apt-get options: fail fast without network rather than retrying for minutes. */
const APT_OPTIONS = ['-o', 'Acquire::Retries=0', '-o', 'Acquire::http::Timeout=20', '-o', 'Acquire::https::Timeout=20'];
let aptState = 'fresh'; // 'fresh' | 'updated' | 'failed' (apt-get update failed: do not try again)

/**
 * Tries to install missing Debian packages with apt-get (only when aptAllowed). Returns the packages
 * still missing afterwards; never exits, so callers decide whether a package is required.
 */
function tryDebianPackages(packages, purpose) {
  let missing = packages.filter((p) => !dpkgInstalled(p));
  if (missing.length === 0 || !aptAllowed || aptState === 'failed') return missing;
  log(`installing ${missing.join(', ')} (${purpose}) with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (argv) => spawnSync('apt-get', [...APT_OPTIONS, ...argv], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (aptState === 'fresh') {
    const update = apt(['update', '-qq']);
    // apt-get update exits 0 with only warnings when some sources cannot be reached.
    if (update.status !== 0 || /^(E|W): (Failed to fetch|Some index files failed)/m.test(update.stderr ?? '')) {
      const reason = (update.stderr || update.error?.message || '').trim().split('\n').pop();
      log(`apt-get update failed (${reason || `exit code ${update.status}`}): no network? System packages stay as they are.`);
      if (update.status !== 0) {
        aptState = 'failed';
        return missing;
      }
    }
    aptState = 'updated';
  }
  const result = apt(['install', '-y', '-qq', '--no-install-recommends', ...missing]);
  if (result.status !== 0) log(`apt-get install ${missing.join(' ')} failed: ${(result.stderr || result.error?.message || '').trim().split('\n').pop()}`);
  missing = missing.filter((p) => !dpkgInstalled(p));
  return missing;
}

/** Required Debian packages: installs them where allowed, else stops with the exact commands. */
function ensureDebianPackages(packages, purpose) {
  const missing = tryDebianPackages(packages, purpose);
  if (missing.length === 0) return;
  const why = aptAllowed ? 'apt-get could not install them' : whyNoApt();
  fail(`pneumo-native setup: ${purpose} needs these Debian packages: ${missing.join(', ')} (${why}).\nInstall them (as root) with:\n  apt-get update\n  ${aptCommand(missing)}`);
}

/**
 * Optional Debian packages: installs them where allowed; one that is missing (not allowed, no
 * network) is named with what it costs and the command that installs it; setup goes on.
 */
function optionalDebianPackages(packages) {
  if (!isDebian) {
    if (!turboJpeg()) log(`note: libjpeg-turbo (turbojpeg.h) not found: ${OPTIONAL_COST['libturbojpeg0-dev']}; install libjpeg-turbo's development files and run \`${rebuildCommand}\``);
    if (!libPng()) log(`note: libpng (png.h) not found: ${OPTIONAL_COST['libpng-dev']}; install libpng's development files and run \`${rebuildCommand}\``);
    return;
  }
  for (const pkg of tryDebianPackages(packages, 'optional: native JPEG decoding')) {
    log(`note: ${pkg} is not installed: ${OPTIONAL_COST[pkg] ?? 'optional feature off'}. To get it: ${aptCommand([pkg])} (as root), then \`${rebuildCommand}\``);
  }
}

// ---- 1. npm dependencies ----------------------------------------------------------------------

function ensureDependencies() {
  const lock = join(root, 'package-lock.json');
  const stampFile = join(root, 'node_modules', '.pneumo-deps-stamp');
  const stamp = hashFiles([join(root, 'package.json'), ...(existsSync(lock) ? [lock] : [])], [process.version]);
  if (!force && readStamp(stampFile) === stamp && resolvable('node-addon-api')) return;
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
    if (!aptAllowed) fail(missingLibTorchMessage(whyNoApt(), rebuildCommand));
    log(`LibTorch not found: installing Debian's libtorch-dev (${DEBIAN_INSTALL.join(' && ')})`);
    const missing = tryDebianPackages(['libtorch-dev', 'libopenblas0-pthread'], 'LibTorch');
    if (missing.length > 0) fail(missingLibTorchMessage(`apt-get could not install ${missing.join(', ')}`, rebuildCommand));
    found = findLibTorch();
    if (!found) fail(missingLibTorchMessage('libtorch-dev was installed but TorchConfig.cmake is still missing', rebuildCommand));
  } else if (found.source === 'debian libtorch-dev' && isDebian && !dpkgInstalled('libopenblas0-pthread')) {
    // Debian's LibTorch otherwise runs matmuls on the slow reference BLAS (a run-time choice: the
    // build does not need it, so a failure here only warns).
    if (tryDebianPackages(['libopenblas0-pthread'], 'a fast BLAS for LibTorch').length > 0) {
      log(`note: libopenblas0-pthread is not installed, so LibTorch's matmuls use the slow reference BLAS. To get it: ${aptCommand(['libopenblas0-pthread'])} (as root)`);
    }
  }
  // libjpeg-turbo is optional (without it JPEG decoding stays in JavaScript).
  optionalDebianPackages(BUILD_PACKAGES);
  return found;
}

// ---- 4. native addon ----------------------------------------------------------------------------

function nativeStamp(torch) {
  const sources = [
    ...listFiles(join(root, 'native'), (p) => /\.(cc|cpp|h|hpp|cu|cuh)$/.test(p)),
    join(root, 'CMakeLists.txt'),
    join(root, 'package.json'),
  ];
  return hashFiles(sources, [torch.cmakeDir, torch.version ?? '', process.version, BUILD_PACKAGES.map(dpkgInstalled).join(), turboJpeg(), libPng()]);
}

/** Build folder: build/ unless $PNEUMO_BUILD_DIR (lets two developers build side by side). */
const buildDir = process.env.PNEUMO_BUILD_DIR ? resolve(root, process.env.PNEUMO_BUILD_DIR) : join(root, 'build');

function ensureNative(torch) {
  const binary = join(buildDir, 'Release', 'pneumo_native.node');
  const stampFile = join(buildDir, 'Release', '.pneumo-stamp');
  const stamp = nativeStamp(torch);
  if (dryRun) {
    const current = !force && existsSync(binary) && readStamp(stampFile) === stamp;
    log(`dry run: the addon in ${buildDir} ${current ? 'is up to date' : 'would be built'} against LibTorch ${torch.version ?? ''} (${torch.source}: ${torch.cmakeDir})`);
    return;
  }
  if (!force && existsSync(binary) && readStamp(stampFile) === stamp) {
    if (args.has('--addon')) log(`the addon in ${binary} is up to date (LibTorch ${torch.version ?? ''} from ${torch.source}); --force-build rebuilds it`);
    return;
  }
  let cmakeJs;
  try {
    cmakeJs = resolveBin('cmake-js', 'cmake-js', root);
  } catch (err) {
    fail(err.message);
  }
  const jobs = Math.max(1, availableParallelism());
  log(`building the native addon in ${buildDir} against LibTorch ${torch.version ?? ''} (${torch.source}: ${torch.cmakeDir}) with ${jobs} jobs (a few minutes)`);
  const started = Date.now();
  run(process.execPath, [
    cmakeJs,
    'compile',
    '--directory',
    root,
    '--out',
    buildDir,
    '--parallel',
    String(jobs),
    `--CDTorch_DIR=${torch.cmakeDir}`,
    `--CDPN_NODE=${process.execPath}`,
    ...(quiet ? ['--log-level', 'warn'] : []),
  ]);
  writeStamp(stampFile, stamp);
  log(`native addon built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${binary}`);
}

// ---- 5. TypeScript ------------------------------------------------------------------------------

function ensureTypeScript() {
  const stampFile = join(root, 'dist', '.pneumo-stamp');
  const sources = [...listFiles(join(root, 'src'), (p) => p.endsWith('.ts')), join(root, 'tsconfig.json'), join(root, 'package.json')];
  const stamp = hashFiles(sources);
  if (!force && readStamp(stampFile) === stamp && existsSync(join(root, 'dist', 'index.js'))) return;
  log('compiling TypeScript (tsc)');
  run(process.execPath, [resolveBin('typescript', 'tsc', root), '-p', join(root, 'tsconfig.json')]);
  writeStamp(stampFile, stamp);
}

/**
 * Whether a prebuilt binary (prebuilds/, prebuildify's layout) loads here and matches this version.
 * A build/ of our own is not a prebuild: ensureNative's stamp decides whether it is current.
 */
function prebuiltLoads() {
  const require = createRequire(join(root, 'package.json'));
  let path;
  try {
    path = require('node-gyp-build').resolve(root);
  } catch {
    return false;
  }
  if (!path.startsWith(join(root, 'prebuilds'))) return false;
  try {
    const binding = require(path);
    const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
    if (binding.version === version) return true;
    log(`the prebuilt ${path} is version ${binding.version}, not ${version}: building from source`);
  } catch (err) {
    log(`the prebuilt ${path} does not load here (${String(err.message).split('\n')[0]}): building from source`);
  }
  return false;
}

/** A clone of this repository (sources and tsconfig, not a packed package). */
function isSourceCheckout() {
  return existsSync(join(root, 'src', 'index.ts')) && existsSync(join(root, 'tsconfig.json'));
}

function resolvable(name) {
  try {
    resolvePackageDir(name, root);
    return true;
  } catch {
    return false;
  }
}

function typeScriptAvailable() {
  try {
    resolveBin('typescript', 'tsc', root);
    return true;
  } catch {
    return false;
  }
}

// ---- main -----------------------------------------------------------------------------------------

if (process.env.PNEUMO_SETUP_ACTIVE === '1') process.exit(0); // npm ci's own hooks, inside setup
process.env.PNEUMO_SETUP_ACTIVE = '1';

if (args.has('--prepare')) {
  // npm's prepare script (npm pack, a git dependency's clone, npm install in a clone): dist/ from src/.
  if (isSourceCheckout() && typeScriptAvailable()) ensureTypeScript();
  process.exit(0);
}

if (args.has('--install-hook')) {
  if (isSourceCheckout()) {
    // `npm install` in a clone, or npm preparing a git dependency: the package it packs is built
    // where it is installed; in a clone, `npm test` / `npm run build` build everything.
    log('source checkout: not building the addon here (`npm run build` builds it)');
    process.exit(0);
  }
  if (!prebuiltLoads()) ensureNative(ensureLibTorch());
  process.exit(0);
}

if (args.has('--addon')) {
  ensureNative(ensureLibTorch());
  process.exit(0);
}

const started = Date.now();
if (dryRun) {
  ensureNative(ensureLibTorch());
  process.exit(0);
}
ensureDependencies();
const torch = ensureLibTorch();
if (args.has('--test')) ensureDebianPackages(TEST_PACKAGES, 'the test suite');
if (args.has('--bench')) ensureDebianPackages(BENCH_PACKAGES, 'the benchmark baselines');
ensureNative(torch);
if (!args.has('--native-only')) ensureTypeScript();
if (!quiet) log(`ready (${((Date.now() - started) / 1000).toFixed(1)} s)`);
