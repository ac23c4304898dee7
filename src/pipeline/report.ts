/**
 * The demo's HTML report: one self-contained file (images inlined as data URIs) that a person opens
 * in a browser: the score beside the all-empty baseline, the training curves, the threshold
 * heatmaps, and test images with the predicted and the true masks drawn over them.
 */
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { assertInteger, invalidParameterError } from '../core/validate.js';

/** One test image with its prediction and truth, all `size` x `size`, row-major. */
export interface OverlayInput {
  /** 8-bit gray pixels. */
  image: Uint8Array;
  /** 0/1 predicted mask. */
  predicted: Uint8Array;
  /** 0/1 true mask. */
  truth: Uint8Array;
  size: number;
}

/** Colours of the overlay: the prediction filled, the truth outlined. */
export const OVERLAY_COLOURS = { predicted: [230, 40, 40], truth: [40, 220, 80] } as const;

/**
 * Draws an overlay: the gray image, the predicted mask filled in translucent red, the true mask's
 * outline in green (a pixel of the truth with a 4-neighbour outside it). Returns RGB pixels.
 */
export function overlayPixels(input: OverlayInput): Uint8Array {
  const { image, predicted, truth, size } = input;
  assertInteger('size', size, 1, 16384);
  const n = size * size;
  for (const [name, a] of [['image', image], ['predicted', predicted], ['truth', truth]] as const) {
    if (!(a instanceof Uint8Array) || a.length !== n) throw invalidParameterError(name, `a Uint8Array of ${size} x ${size} = ${n} values`, a instanceof Uint8Array ? `${a.length} values` : a);
  }
  const out = new Uint8Array(n * 3);
  const [pr, pg, pb] = OVERLAY_COLOURS.predicted;
  const [tr, tg, tb] = OVERLAY_COLOURS.truth;
  for (let y = 0; y < size; y += 1) {
    for (let x = 0; x < size; x += 1) {
      const i = y * size + x;
      const g = image[i]!;
      let r = g;
      let gg = g;
      let b = g;
      if (predicted[i]) {
        r = Math.round(g * 0.55 + pr * 0.45);
        gg = Math.round(g * 0.55 + pg * 0.45);
        b = Math.round(g * 0.55 + pb * 0.45);
      }
      if (truth[i]) {
        const edge = x === 0 || y === 0 || x === size - 1 || y === size - 1 || !truth[i - 1] || !truth[i + 1] || !truth[i - size] || !truth[i + size];
        if (edge) {
          r = tr;
          gg = tg;
          b = tb;
        }
      }
      out[i * 3] = r;
      out[i * 3 + 1] = gg;
      out[i * 3 + 2] = b;
    }
  }
  return out;
}

/** The overlay as a PNG. */
export async function overlayPng(input: OverlayInput): Promise<Buffer> {
  return sharp(overlayPixels(input), { raw: { width: input.size, height: input.size, channels: 3 } }).png().toBuffer();
}

/** A row of the report's score table. */
export interface ReportScoreRow {
  label: string;
  meanDice: number;
  /** Mean Dice over images with pneumothorax (NaN or undefined: none). */
  positiveDice?: number;
  /** Mean Dice over images without. */
  emptyDice?: number;
}

/** A stage of the pipeline and how long it took. */
export interface ReportStage {
  name: string;
  seconds: number;
  /** Reused from an earlier run of the same work folder. */
  reused: boolean;
  detail?: string;
}

/** A picture in the report: a PNG file or PNG bytes. */
export interface ReportFigure {
  title: string;
  png: string | Uint8Array;
  caption?: string;
}

/** A test image tile. */
export interface ReportTile {
  id: string;
  png: Uint8Array;
  /** e.g. "Dice 0.81 · truth 1,234 px · predicted 1,100 px". */
  caption: string;
}

export interface ReportContent {
  title: string;
  /** Lines under the title (data, model, machine). */
  summary: string[];
  scores: ReportScoreRow[];
  stages: ReportStage[];
  figures: ReportFigure[];
  tiles: ReportTile[];
  /** Free-form key/value facts (best triplet, thresholds, ...). */
  facts: [string, string][];
}

function escapeHtml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function dataUri(png: string | Uint8Array): string {
  const bytes = typeof png === 'string' ? readFileSync(png) : Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  return `data:image/png;base64,${bytes.toString('base64')}`;
}

function fmt(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(4);
}

/** Renders the report as one HTML document (no external resources). */
export function renderReportHtml(content: ReportContent): string {
  const rows = content.scores
    .map((s) => `<tr><td>${escapeHtml(s.label)}</td><td>${fmt(s.meanDice)}</td><td>${fmt(s.positiveDice)}</td><td>${fmt(s.emptyDice)}</td></tr>`)
    .join('\n');
  const stages = content.stages
    .map((s) => `<tr><td>${escapeHtml(s.name)}</td><td>${s.reused ? 'reused' : `${s.seconds.toFixed(1)} s`}</td><td>${escapeHtml(s.detail ?? '')}</td></tr>`)
    .join('\n');
  const facts = content.facts.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('\n');
  const figures = content.figures
    .map((f) => `<figure><img src="${dataUri(f.png)}" alt="${escapeHtml(f.title)}"><figcaption><b>${escapeHtml(f.title)}</b>${f.caption ? ` · ${escapeHtml(f.caption)}` : ''}</figcaption></figure>`)
    .join('\n');
  const tiles = content.tiles
    .map((t) => `<figure class="tile"><img src="${dataUri(t.png)}" alt="${escapeHtml(t.id)}"><figcaption>${escapeHtml(t.caption)}<br><code>${escapeHtml(t.id)}</code></figcaption></figure>`)
    .join('\n');
  const [pr, pg, pb] = OVERLAY_COLOURS.predicted;
  const [tr, tg, tb] = OVERLAY_COLOURS.truth;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(content.title)}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1180px; padding: 0 16px; color: #1b1f24; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.summary { color: #555; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
thead td, thead th { background: #f3f4f6; font-weight: 600; }
figure { margin: 10px 0; } figure img { max-width: 100%; border: 1px solid #ccc; }
figcaption { font-size: 13px; color: #444; overflow-wrap: anywhere; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 12px; }
.tile img { width: 100%; image-rendering: pixelated; }
.key span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }
</style>
</head>
<body>
<h1>${escapeHtml(content.title)}</h1>
${content.summary.map((line) => `<p class="summary">${escapeHtml(line)}</p>`).join('\n')}
<h2>Scores</h2>
<table><thead><tr><td>submission</td><td>mean Dice</td><td>Dice, images with pneumothorax</td><td>Dice, images without</td></tr></thead>
<tbody>
${rows}
</tbody></table>
<table><tbody>
${facts}
</tbody></table>
<h2>Test images</h2>
<p class="key">Prediction<span style="background: rgb(${pr},${pg},${pb})"></span> filled · truth<span style="background: rgb(${tr},${tg},${tb})"></span> outlined</p>
<div class="tiles">
${tiles}
</div>
<h2>Training and thresholds</h2>
${figures}
<h2>Pipeline</h2>
<table><thead><tr><td>stage</td><td>time</td><td>detail</td></tr></thead>
<tbody>
${stages}
</tbody></table>
</body>
</html>
`;
}
