#!/usr/bin/env node
// Compiles every native source against LibTorch versions and CUDA settings this machine cannot
// build for, without installing anything: CI's check that the addon still builds on LibTorch 2.x
// and with CUDA when it only has Debian's CPU LibTorch 1.13.
//
//   node scripts/compile-check.mjs [--json] [--only NAME,...]
//
// Headers: Debian trixie's libtorch-dev 2.6 (main) and libtorch-cuda-dev 2.6 (contrib) are fetched
// with `apt-get download` into a private apt state (the machine's own apt state is untouched) and
// unpacked with `dpkg -x` into a cache folder (PNEUMO_HEADERS_CACHE, default
// ~/.cache/pneumo-native/headers), so a second run fetches nothing. CUDA headers come from the
// local CUDA toolkit (CUDA_HOME, /usr/local/cuda) or, without one, bookworm non-free's
// nvidia-cuda-dev (a large download, cached the same way).
//
// Checks (each `g++ -fsyntax-only` over one unity file of every torch-side source, the N-API
// layer and the torch-free sources; warnings in our own files fail the check):
//   libtorch-2.6-cpu    trixie libtorch-dev headers
//   libtorch-2.6-cuda   trixie libtorch-cuda-dev headers + CUDA headers, PN_WITH_CUDA=1
//   libtorch-1.13-cuda  this machine's 1.13 headers + CUDA headers, PN_WITH_CUDA=1 (1.13 CPU is the
//                       real build; Debian has no 1.13 CUDA package, so its one CUDA-only header,
//                       c10/cuda/impl/cuda_cmake_macros.h, is written here)
//   distributed-*       native/distributed/ with c10d enabled (PN_WITH_DISTRIBUTED): 2.6 CPU with
//                       Gloo, 2.6 CUDA and 1.13 CUDA with NCCL (trixie's libgloo-dev/libnccl-dev)
//   nvcc                every .cu file with the machine's nvcc for every architecture the build
//                       requests (scripts/cuda-arch.mjs)
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, homedir, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaArchitectures, gencodeFlags } from './cuda-arch.mjs';
import { napiIncludeDirs, napiSources } from './libtorch.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

/** Sources kept out of the unity file and the torch headers (as in CMakeLists.txt). */
const PLAIN_SOURCES = ['native/inference/thresholds.cpp', 'native/data/dicom_scan.cpp', 'native/data/png_decode.cpp', 'native/data/crc32.cpp'];
/** The c10d sources (as CMakeLists.txt's PN_DISTRIBUTED_SOURCES). */
const DISTRIBUTED_SOURCES = ['native/distributed/process_group.cpp', 'native/distributed/sync_batch_norm.cpp'];
/** Stand-ins for CUDA library headers (declarations ATen's CUDA headers name; nothing here links). */
const CUDA_LIBRARY_STANDINS = {
  'cublas_v2.h': 'typedef struct cublasContext* cublasHandle_t;\ntypedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;',
  'cublasLt.h': '#include "cublas_v2.h"\ntypedef struct cublasLtContext* cublasLtHandle_t;',
  'cusparse.h': 'typedef struct cusparseContext* cusparseHandle_t;\ntypedef enum { CUSPARSE_STATUS_SUCCESS = 0 } cusparseStatus_t;',
  'cusolver_common.h': 'typedef enum { CUSOLVER_STATUS_SUCCESS = 0 } cusolverStatus_t;',
  'cusolverDn.h': '#include "cusolver_common.h"\ntypedef struct cusolverDnContext* cusolverDnHandle_t;',
};
const MIRROR = process.env.PNEUMO_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export function cacheDir() {
  return process.env.PNEUMO_HEADERS_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'pneumo-native', 'headers');
}

function listFiles(dir, test) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(path, test));
    else if (test(path)) out.push(path);
  }
  return out.sort();
}

function log(message) {
  process.stderr.write(`compile-check: ${message}\n`);
}

/** Downloads Debian packages with a private apt state and unpacks each into cache/<name>. */
function fetchPackages(packages, sources) {
  const cache = cacheDir();
  const missing = packages.filter((p) => !existsSync(join(cache, p.dir, '.complete')));
  if (missing.length === 0) return;
  const state = join(cache, 'apt-state');
  for (const d of ['lists/partial', 'cache/archives/partial', 'etc', 'debs']) mkdirSync(join(state, d), { recursive: true });
  writeFileSync(join(state, 'etc', 'sources.list'), sources.map((s) => `deb [signed-by=${KEYRING}] ${MIRROR} ${s}\n`).join(''));
  const opts = [
    `-oDir::Etc::SourceList=${join(state, 'etc', 'sources.list')}`,
    '-oDir::Etc::SourceParts=/nonexistent',
    `-oDir::State::Lists=${join(state, 'lists')}`,
    `-oDir::Cache=${join(state, 'cache')}`,
    '-oAPT::Sandbox::User=root',
    '-qq',
  ];
  log(`fetching ${missing.map((p) => p.pkg).join(', ')} (apt-get download, private state in ${state})`);
  execFileSync('apt-get', [...opts, 'update'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const debs = join(state, 'debs');
  execFileSync('apt-get', [...opts, 'download', ...missing.map((p) => p.pkg)], { cwd: debs, stdio: ['ignore', 'ignore', 'inherit'] });
  for (const p of missing) {
    const deb = readdirSync(debs).find((f) => f.startsWith(`${p.pkg.split('=')[0]}_`) && f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${p.pkg} left no .deb in ${debs}`);
    const staging = mkdtempSync(join(cache, `.${p.dir}-`));
    execFileSync('dpkg', ['-x', join(debs, deb), staging]);
    writeFileSync(join(staging, '.complete'), `${deb}\n`);
    rmSync(join(cache, p.dir), { recursive: true, force: true });
    renameSync(staging, join(cache, p.dir));
    rmSync(join(debs, deb), { force: true });
  }
}

/** The CUDA toolkit's include folder (with cuda_runtime_api.h), fetching nvidia-cuda-dev without one. */
function cudaInclude() {
  for (const home of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].filter(Boolean)) {
    if (existsSync(join(home, 'include', 'cuda_runtime_api.h'))) return join(home, 'include');
  }
  fetchPackages([{ pkg: 'nvidia-cuda-dev', dir: 'nvidia-cuda-dev-bookworm' }], ['bookworm non-free']);
  return join(cacheDir(), 'nvidia-cuda-dev-bookworm', 'usr', 'include');
}

function nvccPath() {
  for (const candidate of [process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'bin', 'nvcc'), '/usr/local/cuda/bin/nvcc', 'nvcc'].filter(Boolean)) {
    try {
      execFileSync(candidate, ['--version'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // next
    }
  }
  return null;
}

function run(cmd, args) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (err) => resolve({ code: -1, output: `${output}${err.message}`, seconds: 0 }));
    child.on('close', (code) => resolve({ code, output, seconds: (Date.now() - started) / 1000 }));
  });
}

/** Warnings that point into our own sources (LibTorch's headers warn on their own). */
function ownWarnings(output) {
  return output.split('\n').filter((l) => /warning:/.test(l) && (l.includes(`${root}/native/`) || l.startsWith('native/')));
}

/** The checks to run: name -> { kind, args }. */
export function plan() {
  const cache = cacheDir();
  const torchSources = listFiles(join(root, 'native'), (p) => p.endsWith('.cpp')).filter((p) => !PLAIN_SOURCES.includes(relative(root, p)));
  const work = mkdtempSync(join(tmpdir(), 'pneumo-compile-'));
  const unity = join(work, 'unity.cpp');
  writeFileSync(unity, torchSources.map((f) => `#include "${f}"\n`).join(''));
  // LibTorch 1.13's CPU package lacks the one generated CUDA header; write it as CUDA builds have it.
  const macros = join(work, 'macros');
  mkdirSync(join(macros, 'c10', 'cuda', 'impl'), { recursive: true });
  writeFileSync(join(macros, 'c10', 'cuda', 'impl', 'cuda_cmake_macros.h'), '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n');
  const base = ['-std=c++17', '-fsyntax-only', '-fopenmp', '-Wall', '-Wextra', '-Wno-unused-parameter', '-Wno-subobject-linkage'];
  // /usr/include is the compiler's own system folder: naming it again would break libstdc++'s
  // #include_next chain, so only the C++ frontend folder is added there.
  const torchIncludes = (prefix) => [...(prefix === '/usr/include' ? [] : [`-isystem${prefix}`]), `-isystem${join(prefix, 'torch', 'csrc', 'api', 'include')}`];
  const trixieCpu = join(cache, 'libtorch-dev-2.6', 'usr', 'include');
  const trixieCuda = join(cache, 'libtorch-cuda-dev-2.6', 'usr', 'include');
  const turbo = existsSync('/usr/include/turbojpeg.h') ? ['-DPN_WITH_TURBOJPEG=1'] : [];
  const checks = [
    { name: 'libtorch-2.6-cpu', args: [...base, ...turbo, ...torchIncludes(trixieCpu), unity] },
    { name: 'libtorch-2.6-cuda', cuda: true, args: [...base, ...turbo, '-DPN_WITH_CUDA=1', ...torchIncludes(trixieCuda), unity] },
    { name: 'libtorch-1.13-cuda', cuda: true, args: [...base, ...turbo, '-DPN_WITH_CUDA=1', ...torchIncludes('/usr/include'), `-isystem${macros}`, unity] },
  ];
  // Data-parallel training (native/distributed/): the sources CMake compiles with c10d (outside the
  // unity batches), with PN_WITH_DISTRIBUTED and, on CUDA, NCCL, against trixie's gloo and NCCL
  // headers. Gloo's and NCCL's own headers come first (-isystem) so 2.6 sees the gloo it was built with.
  const distUnity = join(work, 'distributed.cpp');
  writeFileSync(distUnity, DISTRIBUTED_SOURCES.map((f) => `#include "${join(root, f)}"\n`).join(''));
  const gloo = `-isystem${join(cache, 'libgloo-dev-trixie', 'usr', 'include')}`;
  const nccl = `-isystem${join(cache, 'libnccl-dev-trixie', 'usr', 'include')}`;
  const distFlags = ['-DPN_WITH_DISTRIBUTED=1', `-idirafter${join(root, 'native', 'distributed', 'compat')}`];
  // CUDA library headers this check may not have (the local toolkit can lack cuBLAS/cuSPARSE/
  // cuSOLVER, which ATen/cuda/CUDAContext.h includes): handle types only, after every real folder.
  const cudaLibs = join(work, 'cuda-libs');
  mkdirSync(cudaLibs, { recursive: true });
  for (const [file, text] of Object.entries(CUDA_LIBRARY_STANDINS)) writeFileSync(join(cudaLibs, file), `#pragma once\n${text}\n`);
  checks.push(
    { name: 'distributed-2.6-cpu', args: [...base, ...distFlags, gloo, ...torchIncludes(trixieCpu), distUnity] },
    { name: 'distributed-2.6-cuda-nccl', cuda: true, args: [...base, ...distFlags, '-DPN_WITH_CUDA=1', '-DPN_WITH_NCCL=1', gloo, nccl, ...torchIncludes(trixieCuda), `-idirafter${cudaLibs}`, distUnity] },
    { name: 'distributed-1.13-cuda-nccl', cuda: true, args: [...base, ...distFlags, '-DPN_WITH_CUDA=1', '-DPN_WITH_NCCL=1', nccl, ...torchIncludes('/usr/include'), `-isystem${macros}`, `-idirafter${cudaLibs}`, distUnity] },
  );
  const plain = [
    // The N-API layer: every slice, native/binding/*.cc (napi.h + torch-free headers), in one g++.
    { name: 'napi-layer', args: [...base, '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS', '-DPN_VERSION="check"', ...Object.values(napiIncludeDirs(root)).map((d) => `-isystem${d}`), ...napiSources(root).map((f) => join(root, f))] },
    ...PLAIN_SOURCES.map((s) => ({ name: `plain:${s}`, args: [...base, ...(s.endsWith('png_decode.cpp') && existsSync('/usr/include/png.h') ? ['-DPN_WITH_LIBPNG=1'] : []), ...(s.endsWith('crc32.cpp') && existsSync('/usr/include/zlib.h') ? ['-DPN_WITH_ZLIB=1'] : []), join(root, s)] })),
  ];
  return { checks, plain, work, torchSources };
}

export async function compileCheck({ only } = {}) {
  const results = [];
  fetchPackages(
    [
      { pkg: 'libtorch-dev', dir: 'libtorch-dev-2.6' },
      { pkg: 'libtorch-cuda-dev', dir: 'libtorch-cuda-dev-2.6' },
      { pkg: 'libgloo-dev', dir: 'libgloo-dev-trixie' },
      { pkg: 'libnccl-dev', dir: 'libnccl-dev-trixie' },
    ],
    ['trixie main contrib non-free'],
  );
  const { checks, plain, work } = plan();
  let cudaInc = null;
  const jobs = [];
  for (const c of [...checks, ...plain]) {
    if (only && !only.includes(c.name)) continue;
    if (c.cuda) {
      cudaInc ??= cudaInclude();
      c.args.splice(c.args.length - 1, 0, `-isystem${cudaInc}`);
    }
    jobs.push({ name: c.name, cmd: 'g++', args: c.args });
  }
  const nvcc = nvccPath();
  if (!only || only.includes('nvcc')) {
    if (nvcc) {
      const { architectures } = cudaArchitectures({ nvcc });
      for (const cu of listFiles(join(root, 'native'), (p) => p.endsWith('.cu'))) {
        jobs.push({
          name: `nvcc:${relative(root, cu)}`,
          cmd: nvcc,
          args: ['-std=c++17', '-DPN_WITH_CUDA=1', '--threads=0', ...gencodeFlags(architectures), '-c', cu, '-o', join(work, `${relative(root, cu).replace(/\W/g, '_')}.o`)],
          architectures,
        });
      }
    } else {
      results.push({ name: 'nvcc', ok: true, skipped: 'no nvcc on this machine', seconds: 0 });
    }
  }
  // As many compilers at once as there are cores (each unity check takes ~1.3 GB).
  const queue = [...jobs];
  const workers = Array.from({ length: Math.max(1, Math.min(availableParallelism(), queue.length)) }, async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      log(`${job.name}: compiling`);
      const r = await run(job.cmd, job.args);
      const errors = r.output.split('\n').filter((l) => /\berror\b/.test(l));
      const warnings = ownWarnings(r.output);
      const ok = r.code === 0 && warnings.length === 0;
      log(`${job.name}: ${ok ? 'ok' : 'FAILED'} in ${r.seconds.toFixed(0)} s`);
      results.push({ name: job.name, ok, seconds: r.seconds, ...(job.architectures ? { architectures: job.architectures } : {}), ...(ok ? {} : { errors: errors.slice(0, 40), warnings: warnings.slice(0, 40), output: r.output.slice(-4000) }) });
    }
  });
  await Promise.all(workers);
  rmSync(work, { recursive: true, force: true });
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const onlyIndex = args.indexOf('--only');
  if (onlyIndex >= 0 && !args[onlyIndex + 1]) {
    process.stderr.write('compile-check: --only needs a comma-separated list of check names (libtorch-2.6-cpu, libtorch-2.6-cuda, libtorch-1.13-cuda, napi-layer, nvcc, ...)\n');
    process.exit(2);
  }
  const only = onlyIndex >= 0 ? args[onlyIndex + 1].split(',') : undefined;
  const results = await compileCheck({ only });
  if (args.includes('--json')) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  for (const r of results.filter((x) => !x.ok)) process.stderr.write(`\n${r.name}:\n${[...(r.errors ?? []), ...(r.warnings ?? [])].join('\n') || r.output}\n`);
  process.exit(results.every((r) => r.ok) ? 0 : 1);
}
