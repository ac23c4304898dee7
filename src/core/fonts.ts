/**
 * Text in rendered SVGs (training curves, threshold heatmaps) goes through sharp's librsvg and so
 * through fontconfig, which prints "Fontconfig error: Cannot load default config file" on every
 * render when the machine has no /etc/fonts/fonts.conf (GPU nodes, slim containers). Before the
 * first render, point FONTCONFIG_FILE at the package's own minimal config in that case. A user's
 * FONTCONFIG_FILE or FONTCONFIG_PATH is left alone.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './package-info.js';

let done = false;

/** The fontconfig file rendering uses (the user's or the package's), or null for the system's own. */
export function ensureFontconfig(systemConfig = '/etc/fonts/fonts.conf'): string | null {
  if (done) return process.env.FONTCONFIG_FILE ?? null;
  done = true;
  if (process.env.FONTCONFIG_FILE || process.env.FONTCONFIG_PATH) return process.env.FONTCONFIG_FILE ?? null;
  if (existsSync(systemConfig)) return null;
  const fallback = join(packageRoot(), 'models', 'fonts', 'fonts.conf');
  if (!existsSync(fallback)) return null;
  process.env.FONTCONFIG_FILE = fallback;
  return fallback;
}

/** @internal For tests: forget that the check ran. */
export function resetFontconfigCheck(): void {
  done = false;
}
