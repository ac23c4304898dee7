/**
 * binding.gyp builds the same sources as CMakeLists.txt for node-gyp users (electron-rebuild,
 * prebuildify). Built in a temporary copy of the sources so that build/ (cmake-js) is untouched.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cli.js';

function nodeDir(): string | undefined {
  const fromEnv = process.env.npm_config_nodedir;
  if (fromEnv) return fromEnv;
  try {
    const out = execFileSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' }).trim();
    return out && out !== 'undefined' && out !== 'null' ? out : undefined;
  } catch {
    return undefined;
  }
}

describe('binding.gyp', () => {
  it('builds the addon with node-gyp and the binary works', { timeout: 900_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'pn-gyp-'));
    try {
      for (const entry of ['native', 'scripts', 'binding.gyp', 'package.json']) cpSync(join(repoRoot, entry), join(dir, entry), { recursive: true });
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(join(repoRoot, 'node_modules', 'node-addon-api'), join(dir, 'node_modules', 'node-addon-api'));
      const gyp = join(repoRoot, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
      const nodedir = nodeDir();
      const args = [gyp, 'rebuild', '-j', String(availableParallelism()), ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
      const result = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8' });
      expect(result.status, `node-gyp failed:\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-3000)}`).toBe(0);
      const require = createRequire(import.meta.url);
      const binding = require(join(dir, 'build', 'Release', 'pneumo_native.node')) as {
        version: string;
        fromTypedArray(a: Float32Array, s: number[], d: string, dev: string): { toTypedArraySync(): Float32Array };
      };
      expect(binding.version).toBe((require(join(repoRoot, 'package.json')) as { version: string }).version);
      expect(Array.from(binding.fromTypedArray(Float32Array.from([1, 2, 3]), [3], 'float32', 'cpu').toTypedArraySync())).toEqual([1, 2, 3]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
