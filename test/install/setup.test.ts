/** The setup behind every npm script is idempotent: with nothing changed it does nothing. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findLibTorch, missingLibTorchMessage } from '../../scripts/libtorch.mjs';
import { repoRoot } from '../helpers/cli.js';

describe('scripts/setup.mjs', () => {
  it('a second run (after npm test already set up) installs and rebuilds nothing', () => {
    const result = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'setup.mjs'), '--quiet', '--test'], { cwd: repoRoot, encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(/installing|building|compiling/);
  });

  it('finds LibTorch in the documented order and explains how to install it when missing', () => {
    const found = findLibTorch();
    expect(found?.cmakeDir).toMatch(/Torch$/);
    expect(() => findLibTorch({ LIBTORCH: '/nonexistent/libtorch' })).toThrow(/LIBTORCH=\/nonexistent\/libtorch is not a LibTorch root/);
    expect(() => findLibTorch({ Torch_DIR: '/nonexistent' })).toThrow(/Torch_DIR=\/nonexistent does not contain TorchConfig.cmake/);
    // An explicit Torch_DIR wins over the automatic search (Python torch, Debian).
    const viaTorchDir = findLibTorch({ Torch_DIR: found!.cmakeDir });
    expect(viaTorchDir?.source).toBe('Torch_DIR');
    const message = missingLibTorchMessage('not root');
    expect(message).toContain('apt-get install -y --no-install-recommends libtorch-dev libopenblas0-pthread');
    expect(message).toContain('$LIBTORCH');
  });
});
