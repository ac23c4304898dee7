// Finds the LibTorch to build against, in the documented order:
//   1. $LIBTORCH        a LibTorch root (the unzipped libtorch/ folder: include/, lib/, share/cmake/Torch)
//   2. $Torch_DIR       a folder holding TorchConfig.cmake
//   3. Python's torch   torch.utils.cmake_prefix_path of an importable `torch` (python3, then /usr/bin/python3)
//   4. Debian           libtorch-dev (/usr/lib/<multiarch>/cmake/Torch)
// Used by scripts/setup.mjs, CMakeLists.txt (`node scripts/libtorch.mjs --cmake-dir`,
// `--napi-include-dirs`), binding.gyp (`--include-dirs`, `--gyp-libraries`, `--cxx-abi`,
// `--sources`, `--node-addon-api`) and the addon loader's error message (`--json`). Plain Node, no
// dependencies.
//
// The Node-API headers are found through Node's module resolution from this package's root
// (createRequire(<root>/package.json)), never at a fixed node_modules path: npm (hoisted or nested),
// pnpm (isolated store) and yarn put a dependency's dependencies in different places.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The commands that install LibTorch on Debian (what setup runs as root, or tells the user to). */
export const DEBIAN_INSTALL = [
  'apt-get update',
  'apt-get install -y --no-install-recommends libtorch-dev libopenblas0-pthread',
];

function hasConfig(dir) {
  return Boolean(dir) && existsSync(join(dir, 'TorchConfig.cmake'));
}

function pythonCandidates() {
  const seen = new Set();
  const out = [];
  for (const py of [process.env.PYTHON, 'python3', '/usr/bin/python3']) {
    if (py && !seen.has(py)) {
      seen.add(py);
      out.push(py);
    }
  }
  return out;
}

function fromPython() {
  for (const py of pythonCandidates()) {
    try {
      const out = execFileSync(py, ['-c', 'import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(torch.__version__)'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 60_000,
      }).trim().split('\n');
      const cmakeDir = join(out[0], 'Torch');
      if (hasConfig(cmakeDir)) return { source: `python torch (${py})`, cmakeDir, version: out[1] };
    } catch {
      // not importable with this interpreter
    }
  }
  return undefined;
}

function fromDebian() {
  const candidates = [];
  try {
    for (const entry of readdirSync('/usr/lib')) candidates.push(join('/usr/lib', entry, 'cmake', 'Torch'));
  } catch {
    // no /usr/lib
  }
  candidates.push('/usr/lib/cmake/Torch', '/usr/share/cmake/Torch');
  const cmakeDir = candidates.find(hasConfig);
  return cmakeDir ? { source: 'debian libtorch-dev', cmakeDir } : undefined;
}

/** Reads the LibTorch version from the headers next to a TorchConfig.cmake, when present. */
function headerVersion(cmakeDir, includeDirs) {
  for (const inc of includeDirs) {
    const file = join(inc, 'torch', 'version.h');
    if (existsSync(file)) {
      const m = /#define TORCH_VERSION\s+(?:\\\s*)?"([^"]+)"/.exec(readFileSync(file, 'utf8'));
      if (m) return m[1];
    }
  }
  return undefined;
}

/** This package's root (the folder above scripts/). */
export const packageRootDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Resolves a dependency of this package the way Node would from its package.json (hoisted, nested,
 * pnpm's store, yarn): the absolute folder of `name`. Throws a message naming the package and the
 * fix when it is not installed.
 */
export function resolvePackageDir(name, root = packageRootDir) {
  const require = createRequire(join(root, 'package.json'));
  try {
    return dirname(require.resolve(`${name}/package.json`));
  } catch {
    throw new Error(`pneumo-native: the npm package ${name} is not resolvable from ${root} (its dependencies are not installed): reinstall pneumo-native (npm install) and build again.`);
  }
}

/** A file of a dependency's package.json `bin` (e.g. cmake-js's `cmake-js`), resolved as above. */
export function resolveBin(name, bin = name, root = packageRootDir) {
  const dir = resolvePackageDir(name, root);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const rel = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin?.[bin];
  if (!rel) throw new Error(`pneumo-native: the npm package ${name} has no \`${bin}\` executable`);
  return join(dir, rel);
}

/**
 * Include folders for the N-API layer: node-addon-api (napi.h) and node-api-headers (node_api.h),
 * both resolved from this package (`require('node-addon-api').include_dir` is relative to the
 * current directory, so the folder is taken from the resolved package instead).
 */
export function napiIncludeDirs(root = packageRootDir) {
  // napi.h sits at node-addon-api's package root (its include_dir); node_api.h in node-api-headers/include.
  return { nodeAddonApi: resolvePackageDir('node-addon-api', root), nodeApiHeaders: join(resolvePackageDir('node-api-headers', root), 'include') };
}

/** Whether libjpeg-turbo's development files are installed (for binding.gyp; CMake finds it itself). */
export function turboJpeg() {
  const dirs = ['/usr/include', '/usr/local/include', '/opt/homebrew/include'];
  return dirs.some((d) => existsSync(join(d, 'turbojpeg.h')));
}

/** Whether libpng's development files are installed (for binding.gyp; CMake finds it itself). */
export function libPng() {
  const dirs = ['/usr/include', '/usr/local/include', '/opt/homebrew/include'];
  return dirs.some((d) => existsSync(join(d, 'png.h')));
}

/** Whether zlib's development files are installed (for binding.gyp; CMake finds it itself). */
export function zlib() {
  const dirs = ['/usr/include', '/usr/local/include', '/opt/homebrew/include'];
  return dirs.some((d) => existsSync(join(d, 'zlib.h')));
}

/** The C++ ABI LibTorch was built with, read from TorchConfig.cmake (1 when not stated). */
function cxxAbi(cmakeDir) {
  const m = /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(readFileSync(join(cmakeDir, 'TorchConfig.cmake'), 'utf8'));
  return m ? Number(m[1]) : 1;
}

/** The N-API layer's sources: native/binding/*.cc (napi.h + torch-free headers, one per concept). */
export function napiSources(root) {
  return readdirSync(join(root, 'native', 'binding'))
    .filter((f) => f.endsWith('.cc'))
    .sort()
    .map((f) => `native/binding/${f}`);
}

/** Every source file of the addon (for binding.gyp): native/binding/*.cc, then native/**\/*.cpp. */
export function addonSources(root) {
  const out = napiSources(root);
  const walk = (dir) => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (rel.endsWith('.cpp')) out.push(rel);
    }
  };
  walk('native');
  return out;
}

/**
 * The sources node-gyp compiles: native/binding/*.cc (each on its own: they are light) plus the
 * torch-side files grouped into one unity file
 * per core, written to `<root>/build/unity/` (node-gyp has no precompiled headers, and every
 * torch-side file parses ~25 s of LibTorch headers: two unity files on two cores build in about
 * 2 minutes where 17 separate ones took 8-13). CMakeLists.txt does the same with UNITY_BUILD.
 * PN_UNITY_BATCH=1 lists the files separately.
 */
export function gypSources(root) {
  const napi = napiSources(root);
  const torchSide = addonSources(root).slice(napi.length);
  const perUnit = process.env.PN_UNITY_BATCH && process.env.PN_UNITY_BATCH !== 'auto' ? Number(process.env.PN_UNITY_BATCH) : Math.ceil(torchSide.length / Math.max(1, availableParallelism()));
  if (!(perUnit > 1)) return [...napi, ...torchSide];
  const dir = join(root, 'build', 'unity');
  mkdirSync(dir, { recursive: true });
  const out = [...napi];
  for (let i = 0; i * perUnit < torchSide.length; i++) {
    const rel = `build/unity/torch_${i}.cpp`;
    const body = torchSide.slice(i * perUnit, (i + 1) * perUnit).map((f) => `#include "${join(root, f)}"\n`).join('');
    writeFileSync(join(root, rel), `// Generated by scripts/libtorch.mjs --sources (a unity file for node-gyp): do not edit.\n${body}`);
    out.push(rel);
  }
  return out;
}

/** Include and library folders for a TorchConfig.cmake location (for node-gyp users). */
function layout(cmakeDir) {
  // <prefix>/share/cmake/Torch (LibTorch zip, pip) or <prefix>/lib/<arch>/cmake/Torch (Debian).
  const up = (n) => resolve(cmakeDir, ...Array(n).fill('..'));
  const prefix = existsSync(join(up(3), 'include', 'torch')) ? up(3) : existsSync(join(up(4), 'include', 'torch')) ? up(4) : up(3);
  const includeDirs = [join(prefix, 'include'), join(prefix, 'include', 'torch', 'csrc', 'api', 'include')];
  const libDirs = [join(prefix, 'lib'), dirname(dirname(cmakeDir))].filter((d, i, a) => existsSync(d) && a.indexOf(d) === i);
  return { prefix, includeDirs, libDirs };
}

/**
 * Returns `{ source, cmakeDir, prefix, includeDirs, libDirs, version }` for the first LibTorch
 * found, or `undefined`. Errors for a LIBTORCH/Torch_DIR that is set but wrong are thrown, since
 * silently falling back would build against a LibTorch the user did not ask for.
 */
export function findLibTorch(env = process.env) {
  let found;
  if (env.LIBTORCH) {
    const cmakeDir = join(env.LIBTORCH, 'share', 'cmake', 'Torch');
    if (!hasConfig(cmakeDir)) throw new Error(`LIBTORCH=${env.LIBTORCH} is not a LibTorch root: ${cmakeDir}/TorchConfig.cmake is missing`);
    found = { source: 'LIBTORCH', cmakeDir };
  } else if (env.Torch_DIR) {
    if (!hasConfig(env.Torch_DIR)) throw new Error(`Torch_DIR=${env.Torch_DIR} does not contain TorchConfig.cmake`);
    found = { source: 'Torch_DIR', cmakeDir: resolve(env.Torch_DIR) };
  } else {
    found = fromPython() ?? fromDebian();
  }
  if (!found) return undefined;
  const lay = layout(found.cmakeDir);
  return { ...found, ...lay, cxxAbi: cxxAbi(found.cmakeDir), version: found.version ?? headerVersion(found.cmakeDir, lay.includeDirs) };
}

/**
 * The message shown when no LibTorch is found and setup may not install one: where it looked, the
 * exact commands that install one, and `rebuild`, the command that builds the addon afterwards
 * (`npm run build` in a clone of this repository, `npx pneumo-native build` where it is installed
 * as a dependency).
 */
export function missingLibTorchMessage(reason, rebuild = 'npm run build') {
  return [
    `pneumo-native: LibTorch was not found${reason ? ` (${reason})` : ''}.`,
    'Looked at, in order: $LIBTORCH, $Torch_DIR, the torch of python3 and /usr/bin/python3, Debian libtorch-dev.',
    'Install it with (Debian/Ubuntu, as root):',
    ...DEBIAN_INSTALL.map((c) => `  ${c}`),
    'or point $LIBTORCH at an unzipped LibTorch (a folder with include/, lib/ and share/cmake/Torch),',
    'or $Torch_DIR at the folder holding its TorchConfig.cmake,',
    `then run \`${rebuild}\`.`,
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const flag = process.argv[2] ?? '--json';
  if (flag === '--node-addon-api' || flag === '--napi-include-dirs') {
    try {
      if (flag === '--node-addon-api') process.stdout.write(resolvePackageDir('node-addon-api'));
      else {
        const dirs = napiIncludeDirs();
        process.stdout.write(`${dirs.nodeAddonApi};${dirs.nodeApiHeaders}`);
      }
      process.exit(0);
    } catch (err) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
  }
  let found;
  try {
    found = findLibTorch();
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  if (!found) {
    process.stderr.write(`${missingLibTorchMessage()}\n`);
    process.exit(1);
  }
  if (flag === '--cmake-dir') process.stdout.write(found.cmakeDir);
  else if (flag === '--include-dirs') process.stdout.write(found.includeDirs.join(' '));
  else if (flag === '--lib-dirs') process.stdout.write(found.libDirs.join(' '));
  else if (flag === '--gyp-libraries') process.stdout.write(found.libDirs.flatMap((d) => [`-L${d}`, `-Wl,-rpath,${d}`]).concat(['-ltorch', '-ltorch_cpu', '-lc10'], turboJpeg() ? ['-lturbojpeg'] : [], libPng() ? ['-lpng'] : [], zlib() ? ['-lz'] : []).join(' '));
  else if (flag === '--gyp-defines') process.stdout.write([turboJpeg() ? 'PN_WITH_TURBOJPEG=1' : 'PN_WITHOUT_TURBOJPEG=1', libPng() ? 'PN_WITH_LIBPNG=1' : 'PN_WITHOUT_LIBPNG=1', zlib() ? 'PN_WITH_ZLIB=1' : 'PN_WITHOUT_ZLIB=1'].join(' '));
  else if (flag === '--cxx-abi') process.stdout.write(String(found.cxxAbi));
  else if (flag === '--sources') process.stdout.write(gypSources(packageRootDir).join(' '));
  else process.stdout.write(`${JSON.stringify(found, null, 2)}\n`);
}
