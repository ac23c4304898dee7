import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explainLoadError, loadBinding, NativeLoadError } from '../../src/native/binding.js';

describe('native loader', () => {
  it('loads the built addon with a matching version', () => {
    const binding = loadBinding();
    expect(binding.napiVersion).toBeGreaterThanOrEqual(8);
  });

  it('names the cause and the fix when no binary is built', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pn-loader-'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'pneumo-native', version: '0.0.0' }));
    let err: unknown;
    try {
      loadBinding(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NativeLoadError);
    expect((err as Error).message).toMatch(/no compiled addon in .*build\/Release/);
    expect((err as Error).message).toMatch(/npm run build:native/);
  });

  it.each([
    ['libtorch_cpu.so: cannot open shared object file: No such file or directory', /LibTorch shared libraries .* not installed/],
    ['undefined symbol: _ZN2at6native5emptyE', /built against a different LibTorch/],
    ['The module was compiled against a different Node.js version using NODE_MODULE_VERSION 108', /built for another Node.js/],
    ['something unexpected', /Cause: something unexpected/],
  ])('explains %s', (detail, expected) => {
    const err = explainLoadError(new Error(detail), '/x');
    expect(err.message).toMatch(expected);
    expect(err.message).toContain(`Details: ${detail}`);
    expect(err.message).toMatch(/npm run build/);
  });
});
