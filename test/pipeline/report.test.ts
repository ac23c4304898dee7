import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { OVERLAY_COLOURS, overlayPixels, overlayPng, renderReportHtml } from '../../src/pipeline/report.js';

const SIZE = 8;

function square(x0: number, y0: number, x1: number, y1: number): Uint8Array {
  const m = new Uint8Array(SIZE * SIZE);
  for (let y = y0; y < y1; y += 1) for (let x = x0; x < x1; x += 1) m[y * SIZE + x] = 1;
  return m;
}

describe('report overlays', () => {
  const image = new Uint8Array(SIZE * SIZE).fill(100);
  const predicted = square(1, 1, 4, 4);
  const truth = square(3, 3, 7, 7);

  it('fills the prediction, outlines the truth and leaves the rest gray', () => {
    const rgb = overlayPixels({ image, predicted, truth, size: SIZE });
    const at = (x: number, y: number) => Array.from(rgb.subarray((y * SIZE + x) * 3, (y * SIZE + x) * 3 + 3));
    expect(at(0, 0)).toEqual([100, 100, 100]);
    const [r, g, b] = OVERLAY_COLOURS.predicted;
    expect(at(1, 1)).toEqual([Math.round(55 + r * 0.45), Math.round(55 + g * 0.45), Math.round(55 + b * 0.45)]);
    // The truth's border is green, its inside is not.
    expect(at(3, 3)).toEqual([...OVERLAY_COLOURS.truth]);
    expect(at(6, 4)).toEqual([...OVERLAY_COLOURS.truth]);
    expect(at(4, 4)).toEqual([100, 100, 100]);
    expect(at(5, 5)).toEqual([100, 100, 100]);
  });

  it('encodes a PNG of the same size and rejects masks of another size', async () => {
    const png = await overlayPng({ image, predicted, truth, size: SIZE });
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height, meta.channels]).toEqual([SIZE, SIZE, 3]);
    expect(() => overlayPixels({ image, predicted: new Uint8Array(3), truth, size: SIZE })).toThrow(/64 values for predicted but received "3 values"/);
  });
});

describe('report HTML', () => {
  it('is self-contained and escapes text', async () => {
    const png = await overlayPng({ image: new Uint8Array(SIZE * SIZE), predicted: new Uint8Array(SIZE * SIZE), truth: new Uint8Array(SIZE * SIZE), size: SIZE });
    const html = renderReportHtml({
      title: 'Demo <run>',
      summary: ['12 images & 3 folds'],
      scores: [
        { label: 'model', meanDice: 0.8512, positiveDice: 0.61, emptyDice: 0.93 },
        { label: 'all empty', meanDice: 0.78, positiveDice: 0, emptyDice: 1 },
      ],
      stages: [{ name: 'train', seconds: 12.5, reused: false }, { name: 'synth', seconds: 0, reused: true }],
      figures: [{ title: 'curves', png }],
      tiles: [{ id: 'img-1', png, caption: 'Dice 0.90' }],
      facts: [['best triplet', '0.75, 2000, 0.3']],
    });
    expect(html).toContain('<title>Demo &lt;run&gt;</title>');
    expect(html).toContain('12 images &amp; 3 folds');
    expect(html).toContain('0.8512');
    expect(html).toContain('reused');
    expect(html.match(/src="data:image\/png;base64,/g)).toHaveLength(2);
    expect(html).not.toMatch(/src="(https?:|\/)/);
  });
});
