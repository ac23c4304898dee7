import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCommand, discoverLibTorch, explainLoadError, loadBinding, NativeLoadError } from '../../src/native/binding.js';
import type { LibTorchStatus } from '../../src/native/binding.js';

/** A folder that looks like an installed pneumo-native (package.json, no sources) at version 0.0.0. */
function installedPackage(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pn-loader-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'pneumo-native', version: '0.0.0' }));
  return dir;
}

function loadError(dir: string): Error {
  try {
    loadBinding(dir);
  } catch (e) {
    expect(e).toBeInstanceOf(NativeLoadError);
    return e as Error;
  }
  throw new Error(`loadBinding(${dir}) did not throw`);
}

const found: () => LibTorchStatus = () => ({ found: true, description: 'found, LibTorch 2.6.0 (LIBTORCH) at /opt/libtorch/share/cmake/Torch' });
const notFound: () => LibTorchStatus = () => ({ found: false, description: 'not found: LibTorch was not found (not root: cannot install it)' });

describe('native loader', () => {
  it('loads the built addon with a matching version', () => {
    const binding = loadBinding();
    expect(binding.napiVersion).toBeGreaterThanOrEqual(8);
  });

  it('a missing addon in an installed package: the cause, LibTorch found here, `npx pneumo-native build`, LIBTORCH and Torch_DIR', () => {
    const dir = installedPackage();
    try {
      const message = loadError(dir).message;
      expect(message).toMatch(/Cause: no compiled addon in .*build\/Release .*--ignore-scripts/);
      // This machine has a LibTorch (the suite built against it): the message says which.
      expect(message).toMatch(/LibTorch: found, LibTorch \d+\.\d+[^\n]* at \/\S+\/Torch\./);
      expect(message).toContain('Fix: build it with `npx pneumo-native build` (or `npm rebuild pneumo-native`)');
      expect(message).toMatch(/set LIBTORCH=.* or Torch_DIR=/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a missing addon in a clone of the repository names `npm run build:native`', () => {
    const dir = installedPackage();
    try {
      mkdirSync(join(dir, 'src'));
      writeFileSync(join(dir, 'src', 'index.ts'), '');
      writeFileSync(join(dir, 'tsconfig.json'), '{}');
      expect(buildCommand(dir)).toBe('npm run build:native');
      expect(loadError(dir).message).toContain('Fix: build it with `npm run build:native`.');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a missing addon with no LibTorch: the commands that install one, then the build command', () => {
    const message = explainLoadError(new Error('No native build was found for platform=linux arch=x64'), '/srv/app/node_modules/pneumo-native', notFound).message;
    expect(message).toContain('LibTorch: not found: LibTorch was not found (not root: cannot install it).');
    expect(message).toContain('apt-get install -y --no-install-recommends libtorch-dev libopenblas0-pthread');
    expect(message).toMatch(/set LIBTORCH=<an unzipped libtorch\/ folder> or Torch_DIR=<the folder holding TorchConfig.cmake>/);
    expect(message).toContain('then build it with `npx pneumo-native build` (or `npm rebuild pneumo-native`).');
  });

  it('an addon whose LibTorch moved: a real binary that needs a libtorch_cuda.so that is gone', () => {
    // A shared object linked against a stand-in libtorch_cuda.so (rpath to its folder; a CUDA LibTorch's
    // library, absent from this machine's CPU LibTorch), which is then
    // removed: dlopen fails exactly as for an addon whose LibTorch was moved or uninstalled.
    const dir = installedPackage();
    try {
      const torchDir = join(dir, 'libtorch', 'lib');
      const release = join(dir, 'build', 'Release');
      mkdirSync(torchDir, { recursive: true });
      mkdirSync(release, { recursive: true });
      writeFileSync(join(dir, 'torch.c'), 'int pn_torch_stub(void) { return 1; }\n');
      writeFileSync(join(dir, 'addon.c'), 'int pn_torch_stub(void);\nint pn_addon(void) { return pn_torch_stub(); }\n');
      execFileSync('cc', ['-shared', '-fPIC', '-o', join(torchDir, 'libtorch_cuda.so'), join(dir, 'torch.c')]);
      execFileSync('cc', ['-shared', '-fPIC', '-o', join(release, 'pneumo_native.node'), join(dir, 'addon.c'), `-L${torchDir}`, '-ltorch_cuda', `-Wl,-rpath,${torchDir}`]);
      rmSync(join(dir, 'libtorch'), { recursive: true });
      const message = loadError(dir).message;
      expect(message).toContain('Cause: the LibTorch the addon was built against is gone (moved, upgraded or uninstalled): libtorch_cuda.so cannot be opened.');
      expect(message).toMatch(/LibTorch: found, LibTorch \d+\.\d+/);
      expect(message).toContain('Fix: rebuild it against the LibTorch you have now with `npx pneumo-native build`');
      expect(message).toMatch(/Details: .*libtorch_cuda\.so: cannot open shared object file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a LibTorch that moved and is not found now: says so and what to set', () => {
    const message = explainLoadError(new Error('libtorch_cpu.so: cannot open shared object file: No such file or directory'), '/srv/app/node_modules/pneumo-native', notFound).message;
    expect(message).toMatch(/LibTorch the addon was built against is gone/);
    expect(message).toMatch(/LibTorch: not found/);
    expect(message).toMatch(/or set LIBTORCH=.* or Torch_DIR=/);
    expect(message).toContain('then rebuild it against the LibTorch you have now with `npx pneumo-native build`');
  });

  it('discovery reports a LIBTORCH that is set but wrong', () => {
    const saved = process.env.LIBTORCH;
    process.env.LIBTORCH = '/nonexistent/libtorch';
    try {
      const status = discoverLibTorch();
      expect(status.found).toBe(false);
      expect(status.description).toMatch(/LIBTORCH=\/nonexistent\/libtorch is not a LibTorch root/);
    } finally {
      if (saved === undefined) delete process.env.LIBTORCH;
      else process.env.LIBTORCH = saved;
    }
  });

  it.each([
    ['undefined symbol: _ZN2at6native5emptyE', /built against a different LibTorch/],
    ['The module was compiled against a different Node.js version using NODE_MODULE_VERSION 108', /built for another Node.js/],
    ['something unexpected', /Cause: something unexpected/],
  ])('explains %s', (detail, expected) => {
    const err = explainLoadError(new Error(detail), '/x', found);
    expect(err.message).toMatch(expected);
    expect(err.message).toContain(`Details: ${detail}`);
    expect(err.message).toContain('`npx pneumo-native build`');
  });
});
