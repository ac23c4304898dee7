/**
 * The threshold heatmap: mean Dice over (top, area), one panel per bottom, as SVG rasterised to
 * PNG with sharp. The best cell of the whole grid is outlined.
 */
import sharp from 'sharp';
import { ensureFontconfig } from '../core/fonts.js';
import { writeFileAtomic } from '../core/atomic-write.js';
import type { TripletScore } from '../scoring/thresholds.js';

// Viridis stops: low scores dark blue, high scores yellow.
const STOPS: [number, number, number][] = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

function colour(t: number): string {
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [STOPS[i]!, STOPS[i + 1]!];
  return `rgb(${a.map((v, k) => Math.round(v + (b[k]! - v) * f)).join(',')})`;
}

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** The heatmap as an SVG document. */
export function heatmapSvg(scores: readonly TripletScore[], title = 'Mean Dice by triplet'): string {
  const valid = scores.filter((s) => s.meanDice !== null);
  const bottoms = [...new Set(valid.map((s) => s.triplet[2]))].sort((a, b) => a - b);
  const tops = [...new Set(valid.map((s) => s.triplet[0]))].sort((a, b) => b - a);
  const areas = [...new Set(valid.map((s) => s.triplet[1]))].sort((a, b) => a - b);
  const values = valid.map((s) => s.meanDice!);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const best = valid.reduce<TripletScore | undefined>((b, s) => (b === undefined || s.meanDice! > b.meanDice! ? s : b), undefined);
  const cell = 46;
  const left = 56;
  const topPad = 58;
  const panelW = left + areas.length * cell + 24;
  const panelH = topPad + tops.length * cell + 40;
  const perRow = Math.min(4, Math.max(1, bottoms.length));
  const rows = Math.ceil(bottoms.length / perRow);
  const width = Math.max(360, panelW * perRow);
  const height = 30 + panelH * rows + 30;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, Arial, sans-serif">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="10" y="22" font-size="16" font-weight="bold">${escape(title)}</text>`);
  bottoms.forEach((bottom, p) => {
    const x0 = (p % perRow) * panelW;
    const y0 = 30 + Math.floor(p / perRow) * panelH;
    out.push(`<g transform="translate(0 ${y0 - 30})">`);
    out.push(`<text x="${x0 + left}" y="46" font-size="13">bottom = ${bottom}</text>`);
    tops.forEach((top, r) => {
      out.push(`<text x="${x0 + left - 6}" y="${topPad + r * cell + cell / 2 + 4}" font-size="11" text-anchor="end">${top}</text>`);
      areas.forEach((area, c) => {
        const s = valid.find((v) => v.triplet[0] === top && v.triplet[1] === area && v.triplet[2] === bottom);
        const x = x0 + left + c * cell;
        const y = topPad + r * cell;
        if (!s) {
          out.push(`<rect x="${x}" y="${y}" width="${cell - 1}" height="${cell - 1}" fill="#eee"/>`);
          return;
        }
        const t = hi > lo ? (s.meanDice! - lo) / (hi - lo) : 1;
        out.push(`<rect x="${x}" y="${y}" width="${cell - 1}" height="${cell - 1}" fill="${colour(t)}"/>`);
        out.push(`<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" font-size="10" text-anchor="middle" fill="${t > 0.6 ? 'black' : 'white'}">${s.meanDice!.toFixed(3)}</text>`);
        if (s === best) out.push(`<rect x="${x + 1}" y="${y + 1}" width="${cell - 3}" height="${cell - 3}" fill="none" stroke="red" stroke-width="3"/>`);
      });
    });
    areas.forEach((area, c) => {
      out.push(`<text x="${x0 + left + c * cell + cell / 2}" y="${topPad + tops.length * cell + 14}" font-size="10" text-anchor="middle">${area}</text>`);
    });
    out.push(`<text x="${x0 + left + (areas.length * cell) / 2}" y="${topPad + tops.length * cell + 32}" font-size="11" text-anchor="middle">area (px at 1024)</text>`);
    out.push(`<text x="${x0 + 14}" y="${topPad + (tops.length * cell) / 2}" font-size="11" transform="rotate(-90 ${x0 + 14} ${topPad + (tops.length * cell) / 2})" text-anchor="middle">top</text>`);
    out.push('</g>');
  });
  if (best) {
    out.push(
      `<text x="10" y="${height - 14}" font-size="12">best (outlined): top ${best.triplet[0]}, area ${best.triplet[1]}, bottom ${best.triplet[2]}: mean Dice ${best.meanDice!.toFixed(4)}; colour scale ${lo.toFixed(3)} to ${hi.toFixed(3)}</text>`,
    );
  }
  out.push('</svg>');
  return out.join('\n');
}

/** Writes the heatmap PNG to `path`; resolves with its pixel size. */
export async function writeHeatmap(path: string, scores: readonly TripletScore[], title?: string): Promise<{ width: number; height: number }> {
  ensureFontconfig();
  const { data, info } = await sharp(Buffer.from(heatmapSvg(scores, title))).png().toBuffer({ resolveWithObject: true });
  await writeFileAtomic(path, data);
  return { width: info.width, height: info.height };
}
