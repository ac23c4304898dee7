/**
 * `npm install pneumo-native` in another project, as a user would: `npm pack` of this tree, then the
 * tarball installed into fresh projects in every usual layout, the addon built there, and a script
 * run that imports the package, creates a model, segments a synthetic DICOM and disposes everything.
 *
 *   hoisted   npm's default; the install hook builds the addon; the examples (examples/http-service,
 *             examples/worker-threads) run against this install
 *   nested    npm --install-strategy=nested --ignore-scripts: importing fails with the load error
 *             naming `npx pneumo-native build`; that command builds; the script runs
 *   pnpm      pnpm's isolated store (symlinks into node_modules/.pnpm), build allowed for pneumo-native
 *   yarn      yarn classic (node_modules linker)
 *
 * pnpm and yarn are installed from the npm registry into node_modules/.cache/pneumo-install-test
 * (kept between runs); a layout whose tool cannot be installed is skipped with the reason.
 * Every layout compiles the addon from scratch (nothing is shared between the installed copies, so
 * each proves its own path resolution, compile and link). Measured on 2 cores shared with other
 * builds (load 12-14): hoisted 715 s (with the examples), nested 371 s, pnpm 436 s, yarn 528 s, the
 * git URL 75 s: 37 minutes; on 2 idle cores a build takes 2-3 minutes, so about 12-15 minutes.
 * PNEUMO_INSTALL_LAYOUTS=hoisted,nested limits the layouts (an empty value runs none).
 * Also: the package from a git URL (npm's prepare), and the tarball's file list.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cli.js';

const LAYOUTS = (process.env.PNEUMO_INSTALL_LAYOUTS ?? 'hoisted,nested,pnpm,yarn').split(',').map((s) => s.trim()).filter(Boolean);
const PNPM = 'pnpm@12.24.0';
const YARN = 'yarn@1.22.22';
const REGISTRY = 'https://registry.npmjs.org/';
const BUILD_TIMEOUT = 2_400_000; // a loaded 2-core machine can take 10+ minutes per build

/** The environment of a user's shell: none of this test run's npm or pneumo-native variables. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k.startsWith('PNEUMO_') || k === 'INIT_CWD' || k.startsWith('VITEST') || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  return { ...env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', ...extra };
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = userEnv(), timeout = BUILD_TIMEOUT): Run {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, maxBuffer: 256 * 2 ** 20 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run, what: string): Run {
  expect(r.status, `${what} failed (exit ${r.status}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-6000)}`).toBe(0);
  return r;
}

let work: string;
let tarball: string;
let version: string;

/** A fresh consumer project with the tarball copied in (a dependency by relative file: path). */
function project(name: string, extra: Record<string, unknown> = {}): string {
  const dir = join(work, name);
  mkdirSync(dir);
  copyFileSync(tarball, join(dir, 'pneumo-native.tgz'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${name}`, version: '1.0.0', private: true, type: 'module', ...extra }, null, 2));
  copyFileSync(join(repoRoot, 'test', 'install', 'fixtures', 'smoke.mjs'), join(dir, 'smoke.mjs'));
  return dir;
}

interface Smoke {
  packagePath: string;
  width: number;
  height: number;
  maskLength: number;
  area: number;
  maxProbability: number;
  rle: string;
  liveTensors: number;
  modelPath: string;
  dicomPath: string;
}

/** Runs smoke.mjs in the project and checks what it printed. */
function smoke(dir: string): Smoke {
  const r = ok(sh(process.execPath, ['smoke.mjs', join(dir, 'out')], dir, userEnv(), 600_000), 'the smoke script');
  const s = JSON.parse(r.stdout.trim().split('\n').pop()!) as Smoke;
  // Resolved from the consumer's own node_modules, not from this repository.
  expect(realpathSync(s.packagePath).startsWith(realpathSync(dir))).toBe(true);
  expect([s.width, s.height, s.maskLength]).toEqual([128, 128, 128 * 128]);
  expect(s.maxProbability).toBeGreaterThanOrEqual(0);
  expect(s.maxProbability).toBeLessThanOrEqual(1);
  expect(typeof s.rle).toBe('string');
  expect(s.liveTensors).toBe(0);
  return s;
}

/** The installed package's own folder (after symlinks), with its build. */
function installed(dir: string): string {
  return realpathSync(join(dir, 'node_modules', 'pneumo-native'));
}

function expectBuilt(dir: string): void {
  expect(existsSync(join(installed(dir), 'build', 'Release', 'pneumo_native.node')), 'the addon was not built in the installed package').toBe(true);
}

/** pnpm / yarn from the npm registry, cached in node_modules/.cache between runs; undefined when unavailable. */
function tool(spec: string, bin: string): { bin?: string; why?: string } {
  const dir = join(repoRoot, 'node_modules', '.cache', 'pneumo-install-test', spec.replace(/[@/]/g, '_'));
  const path = join(dir, 'node_modules', '.bin', bin);
  if (existsSync(path)) return { bin: path };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), '{"private":true}');
  const r = sh('npm', ['install', '--no-save', '--prefix', dir, `--registry=${REGISTRY}`, spec], dir, userEnv(), 300_000);
  if (r.status !== 0 || !existsSync(path)) return { why: `${spec} could not be installed from ${REGISTRY}: ${r.stderr.trim().split('\n').pop()}` };
  return { bin: path };
}

describe.runIf(LAYOUTS.length > 0)('npm install pneumo-native in another project', () => {
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'pn-install-'));
    // npm pack runs `prepare` (TypeScript to dist/); the tarball holds what `files` lists.
    const r = ok(sh('npm', ['pack', '--pack-destination', work], repoRoot, userEnv(), 600_000), 'npm pack');
    const name = r.stdout.trim().split('\n').pop()!;
    tarball = join(work, name);
    version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
    expect(name).toBe(`pneumo-native-${version}.tgz`);
  }, 600_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it.runIf(LAYOUTS.includes('hoisted'))('npm (hoisted, the default): the install hook builds; the script, the HTTP service and the worker_threads examples run', { timeout: BUILD_TIMEOUT + 900_000 }, async () => {
    const dir = project('hoisted');
    ok(sh('npm', ['install', './pneumo-native.tgz'], dir), 'npm install');
    // Hoisted: pneumo-native's dependencies sit beside it, not inside it.
    expect(existsSync(join(dir, 'node_modules', 'cmake-js', 'package.json'))).toBe(true);
    expect(existsSync(join(dir, 'node_modules', 'pneumo-native', 'node_modules', 'cmake-js'))).toBe(false);
    expectBuilt(dir);
    const s = smoke(dir);

    // A second build has nothing to do (stamps), and says so; `npm rebuild` runs the same hook.
    const again = ok(sh('npx', ['pneumo-native', 'build'], dir), 'npx pneumo-native build (up to date)');
    expect(again.stderr).toMatch(/is up to date/);
    ok(sh('npm', ['rebuild', 'pneumo-native'], dir), 'npm rebuild pneumo-native');
    smoke(dir);

    // examples/http-service/server.mjs: POST the DICOM, get the same answer as the Segmenter gave.
    copyFileSync(join(repoRoot, 'examples', 'http-service', 'server.mjs'), join(dir, 'server.mjs'));
    const server = spawn(process.execPath, ['server.mjs', s.modelPath, '--port', '0', '--size', '64'], { cwd: dir, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let serverErr = '';
    server.stderr.on('data', (d: Buffer) => (serverErr += d.toString()));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        server.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve((JSON.parse(out.split('\n')[0]) as { url: string }).url);
        });
        server.on('exit', (code) => reject(new Error(`server.mjs exited with ${code}: ${serverErr}`)));
      });
      expect((await fetch(`${url}/health`)).status).toBe(200);
      const dicomBytes = readFileSync(s.dicomPath);
      const responses = await Promise.all([0, 1, 2].map(() => fetch(`${url}/segment`, { method: 'POST', body: dicomBytes, headers: { 'content-type': 'application/dicom' } })));
      for (const res of responses) {
        expect(res.status).toBe(200);
        const body = (await res.json()) as { rle: string; area: number; width: number };
        expect([body.rle, body.area, body.width]).toEqual([s.rle, s.area, 128]);
      }
      const bad = await fetch(`${url}/segment`, { method: 'POST', body: 'not an image' });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { code: string }).code).toBe('BAD_INPUT');
      const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
      server.kill('SIGTERM');
      expect(await exited, serverErr).toBe(0);
    } finally {
      server.kill('SIGKILL');
    }

    // examples/worker-threads: two workers, each with its own Segmenter, give the same answer.
    for (const f of ['main.mjs', 'segment-worker.mjs']) copyFileSync(join(repoRoot, 'examples', 'worker-threads', f), join(dir, f));
    const w = ok(sh(process.execPath, ['main.mjs', s.modelPath, s.dicomPath, s.dicomPath, s.dicomPath, s.dicomPath, '--workers', '2', '--size', '64'], dir, userEnv(), 600_000), 'the worker_threads example');
    const out = JSON.parse(w.stdout.trim()) as { workers: number; results: { worker: number; rle: string; area: number }[] };
    expect(out.results.map((r) => r.worker)).toEqual([0, 1, 0, 1]);
    for (const r of out.results) expect([r.rle, r.area]).toEqual([s.rle, s.area]);
  });

  it.runIf(LAYOUTS.includes('nested'))('npm --install-strategy=nested --ignore-scripts: the load error names `npx pneumo-native build`, which builds', { timeout: BUILD_TIMEOUT + 600_000 }, () => {
    const dir = project('nested');
    ok(sh('npm', ['install', '--install-strategy=nested', '--ignore-scripts', './pneumo-native.tgz'], dir), 'npm install --ignore-scripts');
    expect(existsSync(join(dir, 'node_modules', 'pneumo-native', 'node_modules', 'cmake-js', 'package.json'))).toBe(true);
    expect(existsSync(join(installed(dir), 'build'))).toBe(false);

    // Importing works; the first native call fails with the message that names the fix.
    const failed = sh(process.execPath, ['smoke.mjs', join(dir, 'out')], dir, userEnv(), 300_000);
    expect(failed.status).not.toBe(0);
    expect(failed.stderr).toMatch(/pneumo-native could not load its native addon/);
    expect(failed.stderr).toMatch(/Cause: no compiled addon in \S+node_modules\/pneumo-native\/build\/Release/);
    expect(failed.stderr).toMatch(/LibTorch: found, LibTorch \d/);
    expect(failed.stderr).toContain('Fix: build it with `npx pneumo-native build` (or `npm rebuild pneumo-native`)');

    const built = ok(sh('npx', ['pneumo-native', 'build'], dir), 'npx pneumo-native build');
    // Progress: setup's lines and the compiler's [n/N] steps.
    expect(built.stderr).toMatch(/building the native addon in \S+ against LibTorch/);
    expect(`${built.stdout}${built.stderr}`).toMatch(/\[\d+\/\d+\] (Building|Linking)/);
    expect(built.stderr).not.toMatch(/apt-get install/);
    expectBuilt(dir);
    smoke(dir);
  });

  it.runIf(LAYOUTS.includes('pnpm'))('pnpm (isolated store): the install hook, allowed for pneumo-native, builds; the script runs', { timeout: BUILD_TIMEOUT + 600_000 }, (ctx) => {
    const pnpm = tool(PNPM, 'pnpm');
    if (!pnpm.bin) return ctx.skip(pnpm.why);
    const dir = project('pnpm');
    // pnpm runs no dependency build script unless allowed, and fails the install over one neither
    // allowed nor denied (pnpm-workspace.yaml allowBuilds): core-js-pure (under dcmjs) only prints a banner.
    writeFileSync(join(dir, 'pnpm-workspace.yaml'), 'allowBuilds:\n  "pneumo-native@file:pneumo-native.tgz": true\n  core-js-pure: false\n');
    ok(sh(pnpm.bin, ['add', `--registry=${REGISTRY}`, 'file:pneumo-native.tgz'], dir), 'pnpm add');
    expect(installed(dir)).toMatch(/\/node_modules\/\.pnpm\/pneumo-native@[^/]+\/node_modules\/pneumo-native$/);
    expect(existsSync(join(dir, 'node_modules', 'cmake-js'))).toBe(false); // strict: only direct dependencies at the top
    expectBuilt(dir);
    smoke(dir);
  });

  it.runIf(LAYOUTS.includes('yarn'))('yarn (node_modules linker): the install hook builds; the script runs', { timeout: BUILD_TIMEOUT + 600_000 }, (ctx) => {
    const yarn = tool(YARN, 'yarn');
    if (!yarn.bin) return ctx.skip(yarn.why);
    const dir = project('yarn');
    ok(sh(yarn.bin, ['add', '--registry', REGISTRY, '--non-interactive', '--no-progress', 'file:./pneumo-native.tgz'], dir, userEnv({ YARN_CACHE_FOLDER: join(repoRoot, 'node_modules', '.cache', 'pneumo-install-test', 'yarn-cache') })), 'yarn add');
    expect(existsSync(join(dir, 'node_modules', 'cmake-js', 'package.json'))).toBe(true);
    expectBuilt(dir);
    smoke(dir);
  });

  it('from a git URL: npm prepares the clone (TypeScript to dist/, no native build there) into the same installable package', { timeout: 900_000 }, (ctx) => {
    const head = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' });
    if (head.status !== 0) return ctx.skip('not a git checkout');
    const dest = join(work, 'git');
    mkdirSync(dest);
    // npm clones the commit, installs its devDependencies, runs `prepare` and packs the result.
    const r = ok(sh('npm', ['pack', `git+file://${repoRoot}#${head.stdout.trim()}`, '--pack-destination', dest], dest, userEnv(), 900_000), 'npm pack git+file://');
    expect(r.stdout).toMatch(/source checkout: not building the addon here|setup\.mjs --prepare/);
    const files = ok(sh('tar', ['-tzf', join(dest, `pneumo-native-${version}.tgz`)], dest, userEnv(), 60_000), 'tar').stdout.split('\n');
    for (const f of ['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/cli/main.js', 'package/scripts/setup.mjs', 'package/CMakeLists.txt']) expect(files, f).toContain(f);
    expect(files.filter((f) => /^package\/(build|node_modules)\//.test(f))).toEqual([]);
  });

  it('the tarball ships what a build needs and nothing of the development tree', () => {
    const r = ok(sh('tar', ['-tzf', tarball], work, userEnv(), 60_000), 'tar');
    const files = r.stdout.split('\n').filter(Boolean);
    for (const f of ['package/dist/index.js', 'package/dist/cli/main.js', 'package/scripts/setup.mjs', 'package/scripts/libtorch.mjs', 'package/CMakeLists.txt', 'package/binding.gyp', 'package/native/binding/init.cc', 'package/native/binding/slices.h', 'package/native/binding/args.h']) {
      expect(files, f).toContain(f);
    }
    expect(files.filter((f) => /^package\/(src|test|build|node_modules|bench)\//.test(f))).toEqual([]);
    expect(readdirSync(work).length).toBeGreaterThan(0);
  });
});
