/**
 * On a machine without /etc/fonts/fonts.conf (GPU nodes, slim containers), rendering the training
 * curves printed "Fontconfig error: Cannot load default config file" on every render. The package
 * now points FONTCONFIG_FILE at its own minimal config there. Reproduced by hiding /etc/fonts in a
 * private mount namespace (needs root and unshare; skipped with the reason otherwise).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureFontconfig, resetFontconfigCheck } from '../../src/core/fonts.js';
import { repoRoot } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'pn-fonts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fontconfig fallback', () => {
  it('points FONTCONFIG_FILE at the packaged config only when the system has none and the user set nothing', () => {
    const saved = { file: process.env.FONTCONFIG_FILE, path: process.env.FONTCONFIG_PATH };
    try {
      delete process.env.FONTCONFIG_FILE;
      delete process.env.FONTCONFIG_PATH;
      resetFontconfigCheck();
      expect(ensureFontconfig('/etc/passwd')).toBeNull(); // a system config exists: nothing changes
      expect(process.env.FONTCONFIG_FILE).toBeUndefined();
      resetFontconfigCheck();
      const used = ensureFontconfig('/nonexistent/fonts.conf');
      expect(used).toBe(join(repoRoot, 'models', 'fonts', 'fonts.conf'));
      expect(process.env.FONTCONFIG_FILE).toBe(used);
      resetFontconfigCheck();
      process.env.FONTCONFIG_FILE = '/users/own.conf';
      expect(ensureFontconfig('/nonexistent/fonts.conf')).toBe('/users/own.conf');
    } finally {
      if (saved.file === undefined) delete process.env.FONTCONFIG_FILE;
      else process.env.FONTCONFIG_FILE = saved.file;
      if (saved.path !== undefined) process.env.FONTCONFIG_PATH = saved.path;
      resetFontconfigCheck();
    }
  });

  it('curves render without a Fontconfig error when /etc/fonts is missing', () => {
    const empty = mkdtempSync(join(dir, 'empty-'));
    const script = join(dir, 'render.mjs');
    writeFileSync(
      script,
      `const { renderCurves } = await import(${JSON.stringify(pathToFileURL(join(repoRoot, 'dist', 'training', 'curves.js')).href)});
const rec = (epoch, loss, score) => ({ epoch, loss, lr: 1e-4, encoderLr: null, encoderFrozen: false, images: 10, steps: 5, sampleRate: null, gradNorm: 1, seconds: 1, imagesPerSecond: 10, dataWait: 0, validation: { score, triplet: null, tripletScores: [], dicePositive: null, diceEmpty: null, emptyBaseline: 0.5, images: 4, positives: 1 } });
const png = await renderCurves([rec(0, 1, 0.5), rec(1, 0.8, 0.6)], 'fonts');
console.log('rendered ' + png.length);
`,
    );
    const env = { ...process.env };
    delete env.FONTCONFIG_FILE;
    delete env.FONTCONFIG_PATH;
    const r = spawnSync('unshare', ['--mount', 'sh', '-c', `mount --bind ${empty} /etc/fonts && exec ${process.execPath} ${script}`], { encoding: 'utf8', env });
    if (r.error || (r.status !== 0 && /unshare|mount/.test(r.stderr) && !/rendered/.test(r.stdout))) {
      console.log(`skipped: cannot hide /etc/fonts here (${(r.error?.message ?? r.stderr).trim().split('\n')[0]})`);
      return;
    }
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/rendered \d+/);
    expect(r.stderr).not.toMatch(/Fontconfig error/);
  });
});
