/**
 * `pneumo-native demo` end to end on a tiny setting (64 px, 1 epoch): every stage runs, the report
 * and the submission are written, the scores are consistent, and a second run reuses everything.
 * (The full-size demo's quality targets are measured by `npm run demo`, not asserted here.)
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseJson, runCli } from '../helpers/cli.js';

interface DemoJson {
  report: string;
  submission: string;
  test: { meanDice: number; emptyBaseline: number; images: number; positives: number };
  validation: { meanDice: number; emptyBaseline: number; triplet: number[]; images: number };
  training: { epochsRun: number; checkpoint: string };
  stages: { name: string; reused: boolean }[];
}

const STAGES = ['synth', 'prepare', 'folds', 'train', 'infer-oof', 'thresholds', 'infer-test', 'submit'];

describe('demo', () => {
  const workdir = mkdtempSync(join(tmpdir(), 'pn-demo-'));
  afterAll(() => rmSync(workdir, { recursive: true, force: true }));
  const args = ['demo', '--json', '--workdir', workdir, '--train', '40', '--test', '10', '--size', '64', '--epochs', '1'];

  it('runs every stage and writes the report and the submission', { timeout: 600_000 }, async () => {
    const result = await runCli(args, { timeoutMs: 600_000 });
    expect(result.code, result.stderr).toBe(0);
    const demo = parseJson<DemoJson>(result);
    expect(demo.stages.map((s) => s.name)).toEqual(STAGES);
    expect(demo.stages.every((s) => !s.reused)).toBe(true);
    expect(demo.training.epochsRun).toBe(1);
    expect(existsSync(demo.training.checkpoint)).toBe(true);
    expect(demo.test.images).toBe(10);
    expect(demo.validation.images).toBe(8); // fold 0 of 5 over 40 images
    expect(demo.test.meanDice).toBeGreaterThanOrEqual(0);
    expect(demo.test.meanDice).toBeLessThanOrEqual(1);
    expect(demo.test.emptyBaseline).toBeGreaterThan(0);
    expect(demo.validation.triplet).toHaveLength(3);
    const csv = readFileSync(demo.submission, 'utf8').trim().split('\n');
    expect(csv[0]).toBe('ImageId,EncodedPixels');
    expect(csv).toHaveLength(11);
    const html = readFileSync(demo.report, 'utf8');
    expect(html).toContain('test, all empty');
    expect(html.match(/data:image\/png;base64,/g)!.length).toBeGreaterThanOrEqual(2 + 8); // curves, heatmaps, tiles
    expect(result.stderr).toMatch(/demo: train/);
  });

  it('a second run reuses every stage and reports the same scores', { timeout: 300_000 }, async () => {
    const first = JSON.parse(readFileSync(join(workdir, 'stages', 'submit.json'), 'utf8')) as { result: { score: { meanDice: number } } };
    const result = await runCli(args, { timeoutMs: 300_000 });
    expect(result.code, result.stderr).toBe(0);
    const demo = parseJson<DemoJson>(result);
    expect(demo.stages.every((s) => s.reused)).toBe(true);
    expect(demo.test.meanDice).toBeCloseTo(first.result.score.meanDice, 10);
  });

  it('rejects a size that the model cannot take, naming it', async () => {
    const result = await runCli(['demo', '--workdir', join(workdir, 'bad'), '--size', '100']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/multiple of 32 for size but received 100/);
  });
});
