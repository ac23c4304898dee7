/**
 * Training curves as an image: an SVG drawn here (training loss by epoch on the left; validation
 * score, Dice on positive images and the all-empty baseline on the right), rasterised to PNG with
 * sharp. No plotting dependency.
 */
import sharp from 'sharp';
import { ensureFontconfig } from '../core/fonts.js';
import type { EpochRecord } from './run-files.js';

interface Series {
  label: string;
  colour: string;
  points: [number, number][];
  dashed?: boolean;
}

const WIDTH = 900;
const HEIGHT = 360;
const PANEL = { top: 40, bottom: 50, left: 60, right: 20 };

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const step = 10 ** Math.floor(Math.log10(raw));
  const unit = [1, 2, 5, 10].map((m) => m * step).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / unit) * unit; v <= max + 1e-12; v += unit) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function panel(x0: number, width: number, title: string, series: Series[], epochs: number, yRange?: [number, number], legend: 'top' | 'bottom' = 'top'): string {
  const h = HEIGHT - PANEL.top - PANEL.bottom;
  const w = width - PANEL.left - PANEL.right;
  const left = x0 + PANEL.left;
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  let [lo, hi] = yRange ?? [Math.min(...values), Math.max(...values)];
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (hi - lo < 1e-9) [lo, hi] = [lo - 0.5, hi + 0.5];
  const xMax = Math.max(1, epochs - 1);
  const X = (e: number): number => left + (w * e) / xMax;
  const Y = (v: number): number => PANEL.top + h - (h * (v - lo)) / (hi - lo);
  const parts: string[] = [];
  parts.push(`<text x="${left + w / 2}" y="${PANEL.top - 15}" font-size="15" text-anchor="middle" font-weight="bold">${escapeXml(title)}</text>`);
  parts.push(`<rect x="${left}" y="${PANEL.top}" width="${w}" height="${h}" fill="none" stroke="#888"/>`);
  for (const t of niceTicks(lo, hi)) {
    parts.push(`<line x1="${left}" x2="${left + w}" y1="${Y(t)}" y2="${Y(t)}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${left - 6}" y="${Y(t) + 4}" font-size="11" text-anchor="end">${t}</text>`);
  }
  for (const t of niceTicks(0, xMax, Math.min(10, xMax)).filter((v) => Number.isInteger(v))) {
    parts.push(`<text x="${X(t)}" y="${PANEL.top + h + 16}" font-size="11" text-anchor="middle">${t}</text>`);
  }
  parts.push(`<text x="${left + w / 2}" y="${PANEL.top + h + 34}" font-size="12" text-anchor="middle">epoch</text>`);
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (pts.length === 0) return;
    const d = pts.map((p, j) => `${j === 0 ? 'M' : 'L'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${s.colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (pts.length === 1) parts.push(`<circle cx="${X(pts[0]![0])}" cy="${Y(pts[0]![1])}" r="3" fill="${s.colour}"/>`);
    const ly = legend === 'top' ? PANEL.top + 14 + 16 * i : PANEL.top + h - 8 - 16 * (series.length - 1 - i);
    const lx = legend === 'top' ? left + 8 : left + w - 190;
    parts.push(`<line x1="${lx}" x2="${lx + 20}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="4 3"' : ''}/>`);
    parts.push(`<text x="${lx + 24}" y="${ly}" font-size="11">${escapeXml(s.label)}</text>`);
  });
  return parts.join('\n');
}

/** The curves of a run's history as an SVG document. */
export function curvesSvg(history: readonly EpochRecord[], title = 'training'): string {
  const epochs = Math.max(1, (history.at(-1)?.epoch ?? 0) + 1);
  const loss: Series = { label: 'training loss', colour: '#1f77b4', points: history.map((r) => [r.epoch, r.loss]) };
  const validated = history.filter((r) => r.validation !== null);
  const score: Series = { label: 'validation score', colour: '#d62728', points: validated.map((r) => [r.epoch, r.validation!.score]) };
  const positive: Series = { label: 'Dice on positive images', colour: '#2ca02c', points: validated.filter((r) => r.validation!.dicePositive !== null).map((r) => [r.epoch, r.validation!.dicePositive!]) };
  const baseline: Series = { label: 'all-empty baseline', colour: '#7f7f7f', dashed: true, points: validated.map((r) => [r.epoch, r.validation!.emptyBaseline]) };
  const half = WIDTH / 2;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    panel(0, half, `${title}: loss`, [loss], epochs),
    panel(half, half, 'validation', [score, positive, baseline], epochs, [0, 1], 'bottom'),
    '</svg>',
  ].join('\n');
}

/** Writes the curves as a PNG (and returns its bytes). */
export async function renderCurves(history: readonly EpochRecord[], title?: string): Promise<Buffer> {
  ensureFontconfig();
  return sharp(Buffer.from(curvesSvg(history, title))).png().toBuffer();
}
