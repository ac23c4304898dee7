/**
 * The four seed pipelines (models/pipelines/*.yaml): the first place's plan lists every stage its
 * seed describes, and each pipeline runs end to end in smoke mode (tiny synthetic data, 1 epoch,
 * 2 folds) and writes a submission that `score` accepts; a second run reuses every stage.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseJson, repoRoot, runCli } from '../helpers/cli.js';

const PIPELINES = join(repoRoot, 'models', 'pipelines');
const root = mkdtempSync(join(tmpdir(), 'pn-pipelines-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface PlanResult {
  name: string;
  stages: { name: string; command: string; skipped?: string }[];
}

interface RunResult {
  name: string;
  smoke: boolean;
  submission: string;
  stages: { name: string; reused: boolean; argv: string[] }[];
  score: { meanDice: number; images: number } & Record<string, unknown>;
}

describe('pipeline --plan', () => {
  it('lists every stage of the first place with its exact command', async () => {
    const r = await runCli(['pipeline', join(PIPELINES, 'first-place.yaml'), '--plan', '--json', '--workdir', join(root, 'plan'), '--data', '/data/siim']);
    expect(r.code, r.stderr).toBe(0);
    const plan = parseJson<PlanResult>(r);
    const names = plan.stages.map((s) => s.name);
    const cmd = (name: string): string => plan.stages.find((s) => s.name === name)!.command;
    // Prepare at both sizes, 5 stratified folds.
    expect(names.slice(0, 3)).toEqual(['prepare-512', 'prepare-1024', 'folds']);
    expect(cmd('folds')).toMatch(/^pneumo-native folds --labels \/data\/siim\/train-rle\.csv --k 5 --seed 42 --out /);
    for (const model of ['albunet_public', 'albunet_valid', 'seunet', 'resnet50']) {
      // Every part of every model, each from the previous one; the second stage listed and skipped without stage-1 test labels.
      for (const part of [0, 1, 2, 3]) expect(names).toContain(`train-${model}-part${part}`);
      expect(plan.stages.find((s) => s.name === `train-${model}-part3`)!.skipped).toMatch(/second-stage part/);
      expect(cmd(`train-${model}-part0`)).toContain(`experiments/${model}/part0.yaml`);
      expect(cmd(`train-${model}-part0`)).toMatch(/--folds\.use '\[0,1,2,3,4\]' --resume$/);
      for (const fold of [0, 1, 2, 3, 4]) {
        expect(cmd(`average-${model}-fold${fold}`)).toMatch(new RegExp(`^pneumo-native swa --run \\S+/experiments/${model}/part2/fold${fold} --top 3 --out `));
        expect(cmd(`infer-oof-${model}-fold${fold}`)).toMatch(new RegExp(`--split train --folds \\S+ --fold ${fold} --tta --out`));
      }
      expect(cmd(`infer-test-${model}`)).toMatch(/(--model \S+fold\d\.ckpt ){5}--prepared \S+png1024 --tta/);
    }
    // resnet50 trains at 1024 from the start; the others start at 512.
    expect(cmd('train-resnet50-part0')).toContain('png1024');
    expect(cmd('train-albunet_valid-part0')).toContain('png512');
    // The seed's blend weights, the triplet search on out-of-fold maps, the submission and its score.
    expect(cmd('blend-test')).toMatch(/--maps \S+test-albunet_public\.pnm:0\.4 --maps \S+test-albunet_valid\.pnm:0\.2 --maps \S+test-seunet\.pnm:0\.2 --maps \S+test-resnet50\.pnm:0\.2 /);
    expect(cmd('thresholds')).toMatch(/--maps (\S+oof-blend-fold\d\.pnm ){5}--truth \/data\/siim\/train-rle\.csv/);
    expect(cmd('submit')).toMatch(/--maps \S+test-blend\.pnm --sample \/data\/siim\/stage_2_sample_submission\.csv --out \S+submission\.csv --thresholds \S+thresholds\.json/);
    expect(names.at(-1)).toBe('score');
    expect(names).toHaveLength(3 + 4 * (4 + 5 * 2 + 1) + 5 + 1 + 1 + 1 + 1);
  });

  it('rejects an unknown key in a pipeline file, naming it', async () => {
    const dir = mkdtempSync(join(root, 'bad-'));
    const file = join(dir, 'bad.yaml');
    (await import('node:fs')).writeFileSync(file, `name: bad\nmodels:\n  - { name: a, parts: [${join(repoRoot, 'models/experiments/unet_se50/part0.yaml')}], average: { top: 1 }, wieght: 1 }\n`);
    const r = await runCli(['pipeline', file, '--plan']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown key 'models\[0\]\.wieght'/);
  });
});

describe('swa --run (the averaging stages)', () => {
  it('checks its selection options, naming them', async () => {
    const out = join(root, 'x.ckpt');
    const cases: [string[], RegExp][] = [
      [['swa', '--out', out], /give either --checkpoints or --run/],
      [['swa', '--run', root, '--out', out], /--run needs exactly one of --top K or --epochs/],
      [['swa', '--checkpoints', out, '--top', '3', '--out', out], /--top and --epochs select from a --run folder/],
      [['swa', '--run', root, '--top', '1', '--folds', 'f.csv', '--out', out], /--folds and --fold go together, with --data/],
      [['swa', '--run', join(root, 'nowhere'), '--top', '1', '--out', out], /--run: run folder \S+nowhere does not exist/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe('pipeline --smoke', () => {
  for (const name of ['first-place', 'second-place', '42nd-place', 'unetpp-efficientnet']) {
    it(`${name}: runs every stage on synthetic data and writes a submission that score accepts`, { timeout: 1_200_000 }, async () => {
      const workdir = join(root, name);
      const r = await runCli(['pipeline', join(PIPELINES, `${name}.yaml`), '--smoke', '--json', '--workdir', workdir], { timeoutMs: 1_200_000 });
      expect(r.code, r.stderr.slice(-3000)).toBe(0);
      const result = parseJson<RunResult>(r);
      expect(result.smoke).toBe(true);
      expect(result.stages.every((s) => !s.reused)).toBe(true);
      expect(result.stages.map((s) => s.name)).toEqual(expect.arrayContaining(['synth', 'prepare-64', 'folds', 'submit', 'score']));
      expect(existsSync(result.submission)).toBe(true);
      const rows = readFileSync(result.submission, 'utf8').trim().split('\n');
      expect(rows[0]).toBe('ImageId,EncodedPixels');
      expect(rows).toHaveLength(1 + 6);
      const score = await runCli(['score', '--truth', join(workdir, 'synth', 'test-rle.csv'), '--pred', result.submission, '--size', '64', '--json']);
      expect(score.code, score.stderr).toBe(0);
      const s = parseJson<{ meanDice: number; images: number }>(score);
      expect(s.images).toBe(6);
      expect(s.meanDice).toBeGreaterThanOrEqual(0);
      expect(s.meanDice).toBeLessThanOrEqual(1);
      expect(result.score.meanDice).toBe(s.meanDice);
      if (name === 'second-place') {
        expect(result.stages.map((s) => s.name)).toEqual(expect.arrayContaining(['train-classifier-part0', 'stack', 'blend-test']));
        const submit = result.stages.find((st) => st.name === 'submit')!;
        expect(submit.argv).toEqual(expect.arrayContaining(['--classifier', '--gate', '0.65', '--triplet', '0.4,0,0.4']));
        expect(result.stages.find((st) => st.name === 'average-unet_se50-fold0')!.argv).toEqual(expect.arrayContaining(['--epochs', '0', '--data']));
      }
      if (name === 'unetpp-efficientnet') {
        expect(JSON.parse(readFileSync(join(workdir, 'png64-clahe', 'prepare.json'), 'utf8'))).toMatchObject({ clahe: { clipLimit: 2, tileGrid: 8 } });
        expect(result.stages.find((st) => st.name === 'submit')!.argv).toEqual(expect.arrayContaining(['--triplet', '0.5,2048,0.5']));
      }
      if (name === '42nd-place') {
        expect(result.stages.find((st) => st.name === 'submit')!.argv).toEqual(expect.arrayContaining(['--non-empty-ratio', '0.17']));
        // Both of the seed's models, each in its narrow smoke variant (models[].smokeBackbone), blended.
        expect(result.stages.find((st) => st.name === 'train-unet_r18_42nd-part0')!.argv).toEqual(expect.arrayContaining(['--model.backbone', 'tiny_daunet_r18']));
        expect(result.stages.find((st) => st.name === 'train-bisenet_42nd-part0')!.argv).toEqual(expect.arrayContaining(['--model.backbone', 'tiny_bisenet_r18']));
        expect(result.stages.map((st) => st.name)).toEqual(expect.arrayContaining(['infer-test-bisenet_42nd', 'blend-test']));
        // The BiSeNet classifier on dilated masks ranks the images for non_empty_ratio (no stacking, no out-of-fold maps).
        const cls = result.stages.find((st) => st.name === 'train-classifier-part0')!.argv;
        expect(cls).toEqual(expect.arrayContaining(['--model.backbone', 'tiny_bisenet_r18']));
        expect(result.stages.map((st) => st.name)).not.toContain('stack');
        expect(result.stages.map((st) => st.name)).not.toContain('infer-oof-classifier-fold0');
        expect(result.stages.find((st) => st.name === 'submit')!.argv).toEqual(expect.arrayContaining(['--rank-by', join(workdir, 'maps', 'test-classifier.pnm')]));
        const clsConfig = JSON.parse(readFileSync(join(workdir, 'experiments', 'bisenet_cls_42nd', 'part0', 'fold0', 'config.json'), 'utf8'));
        expect(clsConfig).toMatchObject({ data: { maskDilation: 96 }, sampler: { mode: 'balanced' } });
      }
      if (name === 'unetpp-efficientnet') {
        // A second run reuses every stage.
        const again = await runCli(['pipeline', join(PIPELINES, `${name}.yaml`), '--smoke', '--json', '--workdir', workdir], { timeoutMs: 300_000 });
        expect(again.code, again.stderr.slice(-2000)).toBe(0);
        const second = parseJson<RunResult>(again);
        expect(second.stages.every((s) => s.reused)).toBe(true);
        expect(second.score).toEqual(result.score);
      }
    });
  }
});
