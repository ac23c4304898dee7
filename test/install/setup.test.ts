/** The setup behind every npm script is idempotent: with nothing changed it does nothing. */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

/**
 * Offline, root, no apt: setup as root on Debian with a stand-in apt-get that records its calls and
 * fails as it does without network, and a dpkg-query that reports libturbojpeg0-dev missing.
 * `--dry-run` stops before the (unchanged) native build.
 */
describe('scripts/setup.mjs and system packages', () => {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const isDebian = existsSync('/etc/debian_version');

  function fakeSystem(): { bin: string; log: string; cleanup: () => void } {
    const dir = mkdtempSync(join(tmpdir(), 'pn-apt-'));
    const bin = join(dir, 'bin');
    const log = join(dir, 'apt.log');
    mkdirSync(bin);
    writeFileSync(join(bin, 'apt-get'), `#!/bin/sh\necho "apt-get $*" >> ${log}\necho "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'" >&2\nexit 100\n`);
    const realDpkgQuery = execFileSync('sh', ['-c', 'command -v dpkg-query'], { encoding: 'utf8' }).trim();
    writeFileSync(join(bin, 'dpkg-query'), `#!/bin/sh\nfor a in "$@"; do [ "$a" = libturbojpeg0-dev ] && exit 1; done\nexec ${realDpkgQuery} "$@"\n`);
    chmodSync(join(bin, 'apt-get'), 0o755);
    chmodSync(join(bin, 'dpkg-query'), 0o755);
    return { bin, log, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }

  function setup(flags: string[], bin: string, env: Record<string, string> = {}) {
    const base = { ...process.env };
    delete base.PNEUMO_SETUP_ACTIVE;
    delete base.PNEUMO_INSTALL_SYSTEM_DEPS;
    return spawnSync(process.execPath, [join(repoRoot, 'scripts', 'setup.mjs'), ...flags, '--dry-run'], {
      cwd: repoRoot,
      encoding: 'utf8',
      env: { ...base, PATH: `${bin}:${process.env.PATH}`, ...env },
    });
  }

  it.runIf(isRoot && isDebian)('as a dependency (`pneumo-native build`, the install hook) it never runs apt-get; a missing optional package is named with its cost', () => {
    const fake = fakeSystem();
    try {
      const r = setup(['--addon'], fake.bin);
      expect(r.status, r.stderr).toBe(0);
      expect(existsSync(fake.log)).toBe(false);
      expect(r.stderr).toContain('note: libturbojpeg0-dev is not installed: native JPEG decoding off');
      expect(r.stderr).toContain('apt-get install -y --no-install-recommends libturbojpeg0-dev (as root), then `npx pneumo-native build`');
      expect(r.stderr).toMatch(/dry run: the addon in \S+ would be built against LibTorch/);
    } finally {
      fake.cleanup();
    }
  });

  it.runIf(isRoot && isDebian)('PNEUMO_INSTALL_SYSTEM_DEPS=1 lets a dependency install try apt-get; no network stops nothing', () => {
    const fake = fakeSystem();
    try {
      const r = setup(['--addon'], fake.bin, { PNEUMO_INSTALL_SYSTEM_DEPS: '1' });
      expect(r.status, r.stderr).toBe(0);
      expect(readFileSync(fake.log, 'utf8')).toMatch(/apt-get .*update/);
      expect(r.stderr).toMatch(/apt-get update failed \(E: Failed to fetch .*\): no network\?/);
      expect(r.stderr).toContain('note: libturbojpeg0-dev is not installed: native JPEG decoding off');
    } finally {
      fake.cleanup();
    }
  });

  it.runIf(isRoot && isDebian)("this project's own setup (npm test, demo) tries apt-get as root and goes on offline; LibTorch found: nothing else installed", () => {
    const fake = fakeSystem();
    try {
      const r = setup([], fake.bin);
      expect(r.status, r.stderr).toBe(0);
      const calls = readFileSync(fake.log, 'utf8').trim().split('\n');
      // Only the update (which fails) is run: LibTorch is found, so no libtorch-dev; nothing after the failed update.
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatch(/ update /);
      expect(r.stderr).toContain('note: libturbojpeg0-dev is not installed: native JPEG decoding off');
      expect(r.stderr).toContain('then `npm run build`');
      // PNEUMO_INSTALL_SYSTEM_DEPS=0: not even tried.
      rmSync(fake.log, { force: true });
      const off = setup([], fake.bin, { PNEUMO_INSTALL_SYSTEM_DEPS: '0' });
      expect(off.status, off.stderr).toBe(0);
      expect(existsSync(fake.log)).toBe(false);
    } finally {
      fake.cleanup();
    }
  });
});
