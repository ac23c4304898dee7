/**
 * The training loop through the library: config -> loop on a tiny prepared synthetic dataset
 * (tiny_unet_r18 at 64 px), its files (checkpoints, top-K pruning, summary.csv, metrics.jsonl,
 * curves.png, train.log), and the pieces it is made of (learning-rate control, batch loader,
 * ROC AUC, summaries).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dilateMasks } from '../../src/data/dilate.js';
import { Model } from '../../src/models/model.js';
import { AugmentPipeline } from '../../src/training/augment/pipeline.js';
import { validateConfig } from '../../src/training/config.js';
import type { ExperimentConfig } from '../../src/training/config.js';
import { curvesSvg } from '../../src/training/curves.js';
import { BatchLoader, openPreparedDataset, splitFold } from '../../src/training/loader.js';
import { LrControl } from '../../src/training/lr-control.js';
import { SUMMARY_HEADER, formatSummary } from '../../src/training/run-files.js';
import type { EpochRecord } from '../../src/training/run-files.js';
import { foldDir, lossTerms, optimizerSpec, samplerConfig, trainExperiment, usesLabels } from '../../src/training/trainer.js';
import { TrainEngine } from '../../src/training/engine.js';
import { keepCheckpoints } from '../../src/training/fold-steps.js';
import type { FoldRun, FoldTraining } from '../../src/training/fold-steps.js';
import { lossForwardBackward } from '../../src/training/losses.js';
import { selectRunCheckpoints } from '../../src/training/checkpoint-averaging.js';
import type { TrainEvent } from '../../src/training/trainer.js';
import { rocAuc } from '../../src/training/validation.js';
import { makeTrainFixture } from './train-fixture.js';
import type { TrainFixture } from './train-fixture.js';

let fixture: TrainFixture;
beforeAll(async () => {
  fixture = await makeTrainFixture();
}, 120_000);
afterAll(async () => {
  if (fixture) await rm(fixture.root, { recursive: true, force: true });
});

function tinyConfig(extra: Record<string, unknown> = {}): ExperimentConfig {
  return validateConfig(
    {
      name: 'tiny',
      seed: 3,
      device: 'cpu',
      data: { dir: fixture.data, imgSize: 64, workers: 2 },
      model: { backbone: 'tiny_unet_r18' },
      folds: { use: [0] },
      optimizer: { kind: 'adam', lr: 1e-3 },
      scheduler: { kind: 'cosine' },
      training: { epochs: 3, batchSize: 4, earlyStopping: 0, gradClip: 1, validateEvery: 1 },
      checkpoints: { topK: 2 },
      output: { dir: join(fixture.root, 'runs') },
      ...extra,
    },
    'test',
  );
}

function record(epoch: number, score: number | null, loss = 0.5): EpochRecord {
  return {
    epoch,
    loss,
    lr: 1e-3,
    encoderLr: null,
    encoderFrozen: false,
    images: 8,
    steps: 2,
    sampleRate: 0.8,
    gradNorm: 1,
    seconds: 1,
    imagesPerSecond: 8,
    dataWait: 0.01,
    validation:
      score === null
        ? null
        : { score, triplet: [0.75, 2000, 0.3], tripletScores: [score], dicePositive: score / 2, diceEmpty: 1, emptyBaseline: 0.75, images: 4, positives: 1, seconds: 0.1 },
  };
}

describe('learning-rate control', () => {
  it('follows cosine annealing per epoch and a linear warm-up per step', () => {
    const config = tinyConfig({ scheduler: { kind: 'cosine', minLr: 0, warmup: 0 }, training: { epochs: 4 } });
    const lr = new LrControl(config);
    expect(lr.factor(0, 0, 10)).toBe(1);
    expect(lr.factor(2, 5, 10)).toBeCloseTo(0.5, 12); // cos(pi * 2 / 4): per epoch, not per step
    const warm = new LrControl(tinyConfig({ scheduler: { kind: 'constant', warmup: 0.5 }, training: { epochs: 4 } }));
    expect(warm.factor(0, 5, 10)).toBeCloseTo(0.25, 12); // t = 0.5 of 2 warm-up epochs
    expect(warm.factor(1, 0, 10)).toBeCloseTo(0.5, 12);
    expect(warm.factor(2, 0, 10)).toBe(1);
  });

  it('reduces on a plateau of the validation score and restores its state', () => {
    const config = tinyConfig({ scheduler: { kind: 'plateau', factor: 0.5, patience: 1, threshold: 0 } });
    const lr = new LrControl(config);
    for (const score of [0.5, 0.6, 0.6]) lr.onValidation(score);
    expect(lr.factor(3, 0, 1)).toBe(1);
    lr.onValidation(0.6); // the second validation without improvement: patience 1 exceeded
    expect(lr.factor(4, 0, 1)).toBe(0.5);
    const again = new LrControl(config, JSON.parse(JSON.stringify(lr.toJSON())));
    expect(again.factor(4, 0, 1)).toBe(0.5);
    again.onValidation(0.6);
    again.onValidation(0.6);
    expect(again.factor(5, 0, 1)).toBe(0.25);
  });
});

describe('run files', () => {
  it('writes summary.csv rows for validated epochs only', () => {
    const text = formatSummary([record(0, 0.7), record(1, null), record(2, 0.8)]);
    const lines = text.trim().split('\n');
    expect(lines[0]).toBe(SUMMARY_HEADER);
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual(['0', '2']);
    expect(lines[2]!.split(',').slice(0, 8)).toEqual(['2', '0.8', '0.75', '2000', '0.3', '0.4', '1', '0.75']);
  });

  it('draws curves with the score, the Dice on positives and the all-empty baseline', () => {
    const svg = curvesSvg([record(0, 0.7, 0.9), record(1, 0.8, 0.6)]);
    expect(svg).toMatch(/^<svg/);
    for (const label of ['training loss', 'validation score', 'Dice on positive images', 'all-empty baseline']) expect(svg).toContain(label);
    expect((svg.match(/<path /g) ?? []).length).toBe(4);
  });

  it('computes ROC AUC with ties', () => {
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBeCloseTo(0.75, 12);
    expect(rocAuc([0.5, 0.5], [0, 1])).toBe(0.5);
    expect(rocAuc([0.2, 0.3], [1, 1])).toBeNaN();
  });
});

describe('config -> engine pieces', () => {
  it('maps the config to loss terms, optimizer groups and the sampler', () => {
    const c = tinyConfig({ loss: { kind: 'bce-lovasz' }, optimizer: { kind: 'radam', lr: 5e-4, encoderLr: 5e-5, weightDecay: 1e-4 }, sampler: { positiveRate: 0.8, positiveRateEnd: 0.4 } });
    expect(lossTerms(c)).toEqual([
      { kind: 'balanced-bce', weight: 1, options: { alpha: 0.25 } },
      { kind: 'lovasz', weight: 0.1 },
    ]);
    expect(lossTerms(tinyConfig({ loss: { kind: 'bce-lovasz', bceLovasz: { bce: 2, lovasz: 0.5, alpha: 0.4 } } }))).toEqual([
      { kind: 'balanced-bce', weight: 2, options: { alpha: 0.4 } },
      { kind: 'lovasz', weight: 0.5 },
    ]);
    expect(optimizerSpec(c)).toMatchObject({ algorithm: 'radam', lr: 5e-4, weightDecay: 1e-4, decayBiasesAndNorms: false, lrRules: [['encoder.', 5e-5]] });
    expect(samplerConfig(c)).toEqual({ mode: 'sample-rate', sampleRate: { start: 0.8, end: 0.4 } });
    expect(samplerConfig(tinyConfig({ sampler: { enabled: false } }))).toEqual({ mode: 'all' });
  });
});

describe('BatchLoader', () => {
  it('prepares batches ahead, deterministically per seed, with masks aligned to their images', async () => {
    const dataset = await openPreparedDataset(fixture.data, 'folds.csv');
    const { train, val } = splitFold(dataset, 0);
    expect(train.length + val.length).toBe(16);
    const loader = new BatchLoader(train, { size: 64, batchSize: 4, pipeline: AugmentPipeline.preset('first-place'), channels: 3, depth: 2 });
    const order = Int32Array.from({ length: train.length }, (_, i) => i);
    const run = async (): Promise<{ ids: string[][]; sums: number[] }> => {
      const ids: string[][] = [];
      const sums: number[] = [];
      for await (const b of loader.epoch(order, 9)) {
        expect(b.images.shape).toEqual([b.ids.length, 3, 64, 64]);
        expect(b.masks.shape).toEqual([b.ids.length, 1, 64, 64]);
        ids.push(b.ids);
        sums.push([...(await b.images.data('float32'))].reduce((a, v) => a + v, 0));
        const masks = await b.masks.data('float32');
        expect(masks.every((v) => v === 0 || v === 1)).toBe(true);
        b.dispose();
      }
      return { ids, sums };
    };
    const a = await run();
    const b = await run();
    expect(a.ids.flat()).toEqual(train.map((s) => s.id));
    expect(b.sums).toEqual(a.sums);
    expect(loader.batchesLoaded).toBe(6);
  });

  it('maskDilation dilates the masks before augmentation (the 42nd place classifier)', async () => {
    const dataset = await openPreparedDataset(fixture.data, 'folds.csv');
    const positives = splitFold(dataset, 0).train.filter((s) => s.positive).slice(0, 2);
    const order = Int32Array.from({ length: positives.length }, (_, i) => i);
    const masksOf = async (maskDilation: number): Promise<Float32Array> => {
      const loader = new BatchLoader(positives, { size: 64, batchSize: 2, pipeline: AugmentPipeline.preset('none'), channels: 3, depth: 1, maskDilation });
      for await (const b of loader.epoch(order, 1)) {
        const m = Float32Array.from(await b.masks.data('float32'));
        b.dispose();
        return m;
      }
      throw new Error('no batch');
    };
    const plain = await masksOf(0);
    const dilated = await masksOf(9);
    const expected = dilateMasks(Uint8Array.from(plain, (v) => (v > 0.5 ? 255 : 0)), 2, 64, 64, 9);
    expect(Array.from(dilated)).toEqual(Array.from(expected, (v) => (v ? 1 : 0)));
    expect(dilated.reduce((a, v) => a + v, 0)).toBeGreaterThan(plain.reduce((a, v) => a + v, 0));
    expect(() => new BatchLoader(positives, { size: 64, batchSize: 2, pipeline: AugmentPipeline.preset('none'), channels: 3, maskDilation: -1 })).toThrow(/maskDilation/);
  });
});

describe('trainExperiment', () => {
  it('trains a fold: checkpoints, top-K pruning, best copy, summary, metrics, log and curves', async () => {
    const config = tinyConfig({ training: { epochs: 4, batchSize: 4, earlyStopping: 0, gradClip: 1, validateEvery: 1 } });
    const events: TrainEvent[] = [];
    const result = await trainExperiment(config, { onEvent: (e) => events.push(e) });
    const fold = result.folds[0]!;
    const dir = foldDir(config, 0);
    expect(fold.dir).toBe(dir);
    expect(fold.epochsRun).toBe(4);
    expect(fold.stopped).toBe('completed');

    // summary.csv: one row per validated epoch; metrics.jsonl: one object per epoch.
    const summary = readFileSync(join(dir, 'summary.csv'), 'utf8').trim().split('\n');
    expect(summary[0]).toBe(SUMMARY_HEADER);
    expect(summary).toHaveLength(5);
    const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as EpochRecord);
    expect(metrics.map((m) => m.epoch)).toEqual([0, 1, 2, 3]);
    const scores = metrics.map((m) => m.validation!.score);
    for (const m of metrics) {
      expect(Number.isFinite(m.loss)).toBe(true);
      expect(m.validation!.images).toBe(4);
      expect(m.validation!.emptyBaseline).toBeCloseTo((4 - m.validation!.positives) / 4, 12);
      expect(m.validation!.tripletScores).toHaveLength(8);
      expect(m.validation!.score).toBe(Math.max(...m.validation!.tripletScores));
      expect(m.dataWait).toBeGreaterThanOrEqual(0);
      expect(m.dataWait).toBeLessThanOrEqual(1);
    }
    expect(summary.slice(1).map((l) => Number(l.split(',')[1]))).toEqual(scores.map((s) => Number(s.toFixed(6))));

    // Top-K: the two best validated epochs are kept, the others deleted; best.ckpt is the best one.
    const ranked = metrics.map((m) => ({ epoch: m.epoch, score: m.validation!.score })).sort((a, b) => b.score - a.score || a.epoch - b.epoch);
    const kept = readdirSync(dir).filter((f) => /^epoch\d+\.ckpt$/.test(f)).sort();
    expect(kept).toEqual(ranked.slice(0, 2).map((r) => `epoch${String(r.epoch).padStart(3, '0')}.ckpt`).sort());
    expect(fold.topK.map((c) => c.epoch)).toEqual(ranked.slice(0, 2).map((r) => r.epoch));
    expect(fold.best?.epoch).toBe(ranked[0]!.epoch);
    const best = await Model.loadCheckpoint(join(dir, 'best.ckpt'));
    expect(best.metadata.epoch).toBe(ranked[0]!.epoch);
    expect(best.metadata.score).toBe(ranked[0]!.score);
    expect(best.optimizer.size).toBeGreaterThan(0);
    best.model.dispose();
    for (const t of best.optimizer.values()) t.dispose();
    const last = await Model.loadCheckpoint(join(dir, 'last.ckpt'));
    expect((last.metadata.trainer as { epoch: number; finished: string }).epoch).toBe(4);
    expect((last.metadata.trainer as { finished: string }).finished).toBe('completed');
    last.model.dispose();
    for (const t of last.optimizer.values()) t.dispose();

    const png = await sharp(join(dir, 'curves.png')).metadata();
    expect([png.format, png.width, png.height]).toEqual(['png', 900, 360]);
    const log = readFileSync(join(dir, 'train.log'), 'utf8');
    expect(log).toMatch(/epoch 3: loss [\d.]+, lr [\d.e+-]+, [\d.]+ images\/s, data wait [\d.]+%; val Dice [\d.]+ at \([\d., ]+\) \(all-empty baseline 0\.\d+\)/);
    expect(events.filter((e) => e.type === 'step').length).toBeGreaterThan(0);
    expect(events.filter((e) => e.type === 'epoch-end')).toHaveLength(4);

    // A second run into the same folder is refused unless it resumes; resuming a finished run returns it.
    await expect(trainExperiment(config)).rejects.toThrow(/already holds a run \(last\.ckpt\): pass --resume/);
    const again = await trainExperiment(config, { resume: true });
    expect(again.folds[0]!.best).toEqual(fold.best);
    expect(existsSync(join(dir, 'best.ckpt'))).toBe(true);
  }, 180_000);

  it("starts part 1 from part 0's best checkpoint of the same fold, encoder frozen first", async () => {
    const part0 = await Model.loadCheckpoint(join(foldDir(tinyConfig(), 0), 'best.ckpt'));
    const weights = await part0.model.stateDict();
    const config = tinyConfig({ part: 1, model: { fromPart: 0 }, training: { epochs: 1, batchSize: 4, freezeEncoderEpochs: 1, earlyStopping: 0 } });
    const result = await trainExperiment(config);
    const dir = foldDir(config, 0);
    expect(dir).toMatch(/tiny\/part1\/fold0$/);
    expect(readFileSync(join(dir, 'train.log'), 'utf8')).toContain("starting from part 0's best checkpoint");
    const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as EpochRecord);
    expect(metrics[0]!.encoderFrozen).toBe(true);
    // The frozen encoder kept part 0's weights; the decoder trained on.
    const after = await (await Model.load(join(dir, 'last.ckpt'))).stateDict();
    const same = async (name: string): Promise<boolean> => {
      const a = await weights.get(name)!.data('float32');
      const b = await after.get(name)!.data('float32');
      return a.every((v, i) => v === b[i]);
    };
    expect(await same('encoder.conv1.weight')).toBe(true);
    const decoderName = [...weights.keys()].find((n) => n.startsWith('decoder.') && n.endsWith('.weight'))!;
    expect(await same(decoderName)).toBe(false);
    expect(result.folds[0]!.epochsRun).toBe(1);
    part0.model.dispose();
  }, 120_000);

  it('trains the classifier task: balanced batches, label from the mask, scored by ROC AUC', async () => {
    const config = tinyConfig({ name: 'classify', task: 'classify', sampler: { mode: 'balanced' }, training: { epochs: 1, batchSize: 4, earlyStopping: 0, gradClip: 1 } });
    const result = await trainExperiment(config);
    const v = result.folds[0]!.best!.validation;
    expect(v.triplet).toBeNull();
    expect(v.score).toBeGreaterThanOrEqual(0);
    expect(v.score).toBeLessThanOrEqual(1);
    expect(v.accuracy).toBeGreaterThanOrEqual(0);
    expect(v.emptyBaseline).toBeCloseTo((v.images - v.positives) / v.images, 12);
    const best = await Model.loadCheckpoint(join(foldDir(config, 0), 'best.ckpt'));
    expect(best.model.spec.classificationHead).toBe(true);
    best.model.dispose();
    for (const t of best.optimizer.values()) t.dispose();
  }, 120_000);

  it('runs folds one after another and stops early after validations without improvement', async () => {
    // A triplet no map passes: every image is predicted empty, so the score never improves on the first.
    const config = tinyConfig({ name: 'early', folds: { use: [0, 1] }, validation: { triplets: [[1, 1, 1]] }, training: { epochs: 6, batchSize: 4, earlyStopping: 2, maxStepsPerEpoch: 1 } });
    const result = await trainExperiment(config);
    expect(result.folds.map((f) => f.fold)).toEqual([0, 1]);
    for (const f of result.folds) {
      expect(f.stopped).toBe('early-stopped');
      expect(f.epochsRun).toBe(3);
      expect(f.best?.epoch).toBe(0);
      expect(readFileSync(join(f.dir, 'train.log'), 'utf8')).toMatch(/early stopping: no improvement in 2 validations \(best [\d.]+ at epoch 0\)/);
    }
  }, 120_000);

  it('the configured balanced-BCE/Lovasz weights and the joint label logit give the loss of their references', async () => {
    // The 42nd place's loss with non-default weights: the engine's first step loss against the
    // same terms evaluated one by one (lossForwardBackward) plus labelWeight x BCE on the label logit.
    const config = tinyConfig({ name: 'joint', loss: { kind: 'bce-lovasz', bceLovasz: { bce: 0.7, lovasz: 0.3, alpha: 0.4 }, labelWeight: 0.25 } });
    expect(usesLabels(config)).toBe(true);
    const model = await Model.create({ backbone: 'tiny_unet_r18', classificationHead: true, seed: 5 });
    const dataset = await openPreparedDataset(fixture.data, 'folds.csv');
    const { train } = splitFold(dataset, 0);
    const loader = new BatchLoader(train.slice(0, 4), { size: 64, batchSize: 4, pipeline: AugmentPipeline.preset('none'), channels: 3, depth: 1 });
    const order = Int32Array.from({ length: 4 }, (_, i) => i);
    for await (const batch of loader.epoch(order, 1)) {
      model.train();
      const out = await model.forward(batch.images);
      const bce = await lossForwardBackward('balanced-bce', out.mask, batch.masks, { alpha: 0.4 });
      const lovasz = await lossForwardBackward('lovasz', out.mask, batch.masks);
      const logits = await out.label!.data('float32');
      const labels = await batch.labels.data('float32');
      let labelBce = 0;
      logits.forEach((z, i) => (labelBce += Math.max(z, 0) - z * labels[i]! + Math.log1p(Math.exp(-Math.abs(z)))));
      labelBce /= logits.length;
      const expected = 0.7 * bce.loss + 0.3 * lovasz.loss + 0.25 * labelBce;
      for (const t of [bce.grad, lovasz.grad, out.mask, out.label!]) t.dispose();
      const engine = TrainEngine.create(model, { optimizer: optimizerSpec(config), loss: lossTerms(config), labelWeight: config.loss.labelWeight });
      const step = await engine.step(batch.images, batch.masks, batch.labels);
      expect(step.loss).toBeCloseTo(expected, 4);
      engine.dispose();
      batch.dispose();
    }
    model.dispose();
    // And the trainer builds the head and feeds the labels.
    const result = await trainExperiment(tinyConfig({ name: 'joint', loss: { kind: 'bce-lovasz', labelWeight: 0.1 }, training: { epochs: 1, batchSize: 4, earlyStopping: 0, maxStepsPerEpoch: 2 } }));
    const best = await Model.loadCheckpoint(join(result.folds[0]!.dir, 'best.ckpt'));
    expect(best.model.spec.classificationHead).toBe(true);
    best.model.dispose();
    for (const t of best.optimizer.values()) t.dispose();
  }, 900_000);

  it('keeps the checkpoints of checkpoints.keepEpochs whatever top-K deletes, for swa --run --epochs', async () => {
    const config = tinyConfig({ name: 'keep', training: { epochs: 3, batchSize: 4, earlyStopping: 0, maxStepsPerEpoch: 1, validateEvery: 2 }, checkpoints: { topK: 1, keepEpochs: [0, 1] } });
    const result = await trainExperiment(config);
    const dir = result.folds[0]!.dir;
    const files = readdirSync(dir).filter((f) => /^epoch\d+\.ckpt$/.test(f)).sort();
    // Epoch 0 is not validated (validateEvery 2) and epoch 1 may rank below the best: both stay.
    expect(files).toEqual(expect.arrayContaining(['epoch000.ckpt', 'epoch001.ckpt']));
    expect(files.length).toBeLessThanOrEqual(3);
    expect(await selectRunCheckpoints(dir, { epochs: [0, 1] })).toEqual([join(dir, 'epoch000.ckpt'), join(dir, 'epoch001.ckpt')]);
    const top = await selectRunCheckpoints(dir, { top: 1 });
    expect(top).toEqual([join(dir, `epoch${String(result.folds[0]!.best!.epoch).padStart(3, '0')}.ckpt`)]);
    // Epoch 0 is kept whatever the scores; epoch 5 never ran.
    await expect(selectRunCheckpoints(dir, { epochs: [0, 5] })).rejects.toThrow(/holds no checkpoint of epoch\(s\) 5 \(train with checkpoints\.keepEpochs listing them\)/);
  }, 900_000);

  it('writes a keepEpochs checkpoint on the writing rank only (a data-parallel rank > 0 writes nothing)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pn-keep-'));
    const path = join(dir, 'epoch000.ckpt');
    const run = {
      config: { checkpoints: { topK: 1, keepEpochs: [0] } },
      fold: 0,
      files: { epochCheckpoint: () => path, best: join(dir, 'best.ckpt'), remove: async () => {} },
      writer: false,
    } as unknown as FoldRun;
    // A rank that does not write never touches its model (these stand-ins would throw if saved).
    const t = { model: {}, engine: {}, state: { topK: [] } } as unknown as FoldTraining;
    await keepCheckpoints(run, t, 0, { epoch: 0 } as unknown as EpochRecord, false);
    expect(existsSync(path)).toBe(false);
    await expect(keepCheckpoints({ ...run, writer: true } as FoldRun, t, 0, { epoch: 0 } as unknown as EpochRecord, false)).rejects.toThrow();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a second-stage part whose folds file has no always-train fold', async () => {
    await expect(trainExperiment(tinyConfig({ name: 'stage2', secondStage: true }))).rejects.toThrow(/secondStage: .*folds\.csv has no always-train fold/);
  });

  it('names a missing earlier part when a part starts from it', async () => {
    const config = tinyConfig({ name: 'parts', part: 1, model: { fromPart: 0 } });
    await expect(trainExperiment(config)).rejects.toThrow(/part 1 starts from part 0's best checkpoint of fold 0, but .*part0\/fold0\/best\.ckpt does not exist/);
  });
});
