import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_TRIPLETS, defaultConfig, loadConfig, overridesFromArgs, schemaPaths, validateConfig } from '../../src/training/config.js';
import { repoRoot } from '../helpers/cli.js';

const base = { name: 't', data: { dir: '/data' } };

function problems(raw: unknown): string[] {
  try {
    validateConfig(raw, 'x.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('experiment config', () => {
  it('fills every default and keeps what the file states', () => {
    const c = validateConfig({ ...base, optimizer: { lr: 3e-4 } });
    expect(c.optimizer.lr).toBe(3e-4);
    expect(c.optimizer.kind).toBe('adam');
    expect(c.validation.triplets).toEqual(DEFAULT_TRIPLETS);
    expect(c.loss.weights).toEqual({ bce: 3, dice: 1, focal: 4 });
    // Every schema path exists in the defaults (the schema and the type agree).
    const d = defaultConfig() as unknown as Record<string, unknown>;
    for (const path of schemaPaths().filter((p) => p !== 'extends')) {
      let v: unknown = d;
      for (const part of path.split('.')) v = (v as Record<string, unknown>)[part];
      expect(v, path).not.toBeUndefined();
    }
  });

  it("catches the first place's sUSE_SAMPLER typo and names the closest valid key", () => {
    expect(problems({ ...base, sampler: { sUSE_SAMPLER: true } })).toEqual([
      "unknown key 'sampler.sUSE_SAMPLER' (did you mean the first place's USE_SAMPLER? Here it is 'sampler.enabled')",
    ]);
    expect(problems({ ...base, optimizer: { lerning_rate: 1 } })[0]).toMatch(/unknown key 'optimizer.lerning_rate'/);
    expect(problems({ ...base, training: { epoch: 5 } })).toEqual(["unknown key 'training.epoch' (did you mean 'training.epochs'?)"]);
    expect(problems({ ...base, EPOCHES: 5 })).toEqual(["unknown key 'EPOCHES' (the first place's EPOCHES is 'training.epochs' here)"]);
    expect(problems({ ...base, batchSize: 5 })).toEqual(["unknown key 'batchSize' (did you mean 'training.batchSize'?)"]);
  });

  it('reports every bad value at once, with its path and the expected range', () => {
    const found = problems({ ...base, optimizer: { lr: -1, kind: 'adamm' }, training: { epochs: 2.5 }, validation: { triplets: [[2, 10, 0.3]] } });
    expect(found).toContain('optimizer.lr: expected a number > 0 and <= 10 but got -1');
    expect(found).toContain('optimizer.kind: expected one of adam, adamw, sgd, radam but got "adamm"');
    expect(found).toContain('training.epochs: expected an integer >= 1 and <= 100000 but got 2.5');
    expect(found.some((p) => p.startsWith('validation.triplets: expected a non-empty list of [top (0-1)'))).toBe(true);
  });

  it('checks what depends on several keys', () => {
    expect(problems({ name: 'x' })).toEqual(['data: set data.dir (prepared PNGs) or data.dicomDir (DICOMs read directly)']);
    expect(problems({ data: { dicomDir: '/d' } })).toEqual(['data.labels: required with data.dicomDir (the train-rle.csv to read masks from)']);
    expect(problems({ ...base, part: 1, model: { fromPart: 1 } })).toEqual(['model.fromPart: must be an earlier part than part 1 but got 1']);
  });

  it('follows extends chains, lets CLI flags override, and refuses cycles', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pn-config-'));
    writeFileSync(join(dir, 'a.yaml'), 'name: a\ndata:\n  dir: /d\n  imgSize: 256\noptimizer:\n  lr: 0.001\n');
    writeFileSync(join(dir, 'b.yaml'), 'extends: ./a.yaml\npart: 1\nmodel:\n  fromPart: 0\noptimizer:\n  kind: radam\n');
    const c = loadConfig(join(dir, 'b.yaml'), overridesFromArgs({ optimizer: { lr: 5e-5 }, validation: { triplets: '[[0.7,600,0.3]]' }, unrelated: 1 }));
    expect(c.name).toBe('a');
    expect(c.data.imgSize).toBe(256);
    expect(c.optimizer).toMatchObject({ kind: 'radam', lr: 5e-5 });
    expect(c.validation.triplets).toEqual([[0.7, 600, 0.3]]);
    writeFileSync(join(dir, 'c.yaml'), 'extends: ./d.yaml\n');
    writeFileSync(join(dir, 'd.yaml'), 'extends: ./c.yaml\n');
    expect(() => loadConfig(join(dir, 'c.yaml'))).toThrow(/extends: a cycle/);
    writeFileSync(join(dir, 'bad.yaml'), 'name: [unclosed\n');
    expect(() => loadConfig(join(dir, 'bad.yaml'))).toThrow(/not valid YAML or JSON/);
    expect(() => loadConfig(join(dir, 'missing.yaml'))).toThrow(/missing.yaml: invalid experiment config:\n {2}- cannot read the file \(ENOENT\)/);
    expect(() => overridesFromArgs({ validation: { triplets: 'nope' } })).toThrow(/--validation.triplets: expected JSON/);
  });

  it('ships the recipes as the seeds wrote them', () => {
    const root = join(repoRoot, 'models', 'experiments');
    const experiments = readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory());
    expect(experiments.map((d) => d.name).sort()).toEqual([
      'albunet_public', 'albunet_valid', 'bisenet_42nd', 'bisenet_cls_42nd', 'classifier_se50', 'deeplab_se50', 'resnet50', 'seunet', 'synthetic',
      'unet_ef3', 'unet_ef5', 'unet_r18_42nd', 'unet_se101', 'unet_se50', 'unetpp_ef4',
    ]);
    for (const exp of experiments) {
      for (const file of readdirSync(join(root, exp.name))) loadConfig(join(root, exp.name, file));
    }
    const load = (exp: string, file = 'part0.yaml') => loadConfig(join(root, exp, file));
    const albunet2 = load('albunet_valid', '2nd_stage.yaml');
    expect(albunet2).toMatchObject({ part: 3, secondStage: true, model: { backbone: 'albunet34', fromPart: 2 }, sampler: { positiveRate: 0.5, positiveRateEnd: 0.4 } });
    expect(albunet2.optimizer.lr).toBe(1e-5);
    // The first place decayed every weight (Adam 5e-6 on biases and norms too).
    for (const exp of ['albunet_valid', 'albunet_public', 'seunet', 'resnet50']) {
      for (const file of ['part0.yaml', 'part1.yaml', 'part2.yaml', '2nd_stage.yaml']) expect(load(exp, file).optimizer).toMatchObject({ weightDecay: 5e-6, noDecayOnBiasNorm: false });
    }
    // resnet50: (2,1,2), trained at 1024 from the start (not up-trained from 512), no frozen encoder.
    for (const file of ['part0.yaml', 'part1.yaml', 'part2.yaml', '2nd_stage.yaml']) {
      const c = load('resnet50', file);
      expect(c.loss.weights).toEqual({ bce: 2, dice: 1, focal: 2 });
      expect(c.data.imgSize).toBe(1024);
      expect(c.training.freezeEncoderEpochs).toBe(0);
    }
    expect(load('albunet_valid').data.imgSize).toBe(512);
    expect(load('albunet_valid', 'part1.yaml')).toMatchObject({ data: { imgSize: 1024 }, training: { freezeEncoderEpochs: 2 } });
    // albunet_public: (1,1,1) in every part.
    for (const file of ['part0.yaml', 'part1.yaml', 'part2.yaml', '2nd_stage.yaml']) {
      expect(load('albunet_public', file)).toMatchObject({ name: 'albunet_public', loss: { weights: { bce: 1, dice: 1, focal: 1 } } });
    }
    // Second place: its own augmentation and batch 4, SWA epochs kept whatever top-K deletes.
    expect(load('unet_se50')).toMatchObject({
      sampler: { mode: 'positive-only' },
      loss: { kind: 'soft-dice' },
      augment: { preset: 'second-place' },
      training: { batchSize: 4 },
      scheduler: { kind: 'warm-restarts' },
      checkpoints: { keepEpochs: [34, 39, 43] },
    });
    expect(load('unet_ef3').training.batchSize).toBe(6);
    expect(load('unet_ef5').data.imgSize).toBe(768);
    expect(load('classifier_se50')).toMatchObject({ task: 'classify', training: { batchSize: 8 } });
    // 42nd place: the seed's UNet (dual attention, auxiliary heads) and BiSeNet, the same loss and schedule.
    for (const [exp, backbone] of [['unet_r18_42nd', 'daunet_r18'], ['bisenet_42nd', 'bisenet_r18']] as const) {
      expect(load(exp)).toMatchObject({
        model: { backbone },
        data: { imgSize: 768 },
        folds: { use: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] },
        loss: { kind: 'bce-lovasz', bceLovasz: { bce: 1, lovasz: 0.1, alpha: 0.25 }, labelWeight: 0.1, auxWeight: 0.4 },
        optimizer: { kind: 'radam', lr: 5e-4, weightDecay: 1e-4, noDecayOnBiasNorm: true },
        scheduler: { kind: 'cosine', warmup: 0.05 },
        training: { batchSize: 6, accumulation: 4 },
      });
    }
    // Its BiSeNet classifier: 5 folds, masks dilated by 128 px at 1024 (96 at 768), 50/50 batches, x8.
    expect(load('bisenet_cls_42nd')).toMatchObject({
      model: { backbone: 'bisenet_r18' },
      data: { imgSize: 768, maskDilation: 96 },
      folds: { use: [0, 1, 2, 3, 4] },
      sampler: { enabled: true, mode: 'balanced' },
      loss: { kind: 'bce-lovasz', labelWeight: 0.1, auxWeight: 0.4 },
      optimizer: { kind: 'radam', lr: 5e-4 },
      training: { batchSize: 6, accumulation: 8 },
    });
    expect(load('unetpp_ef4')).toMatchObject({ model: { backbone: 'unetpp_ef4' }, augment: { preset: 'unetpp' } });
    expect(load('synthetic', 'small.yaml')).toMatchObject({ model: { backbone: 'tiny_unet_r18' }, data: { imgSize: 256 }, folds: { use: [0] } });
  });

  it('rejects a key that nothing reads under the resolved config', () => {
    const base = { data: { dir: 'x' } };
    const bad = (over: Record<string, unknown>) => () => validateConfig({ ...base, ...over }, 'f.yaml');
    expect(bad({ loss: { kind: 'soft-dice', weights: { bce: 1 } } })).toThrow(/loss\.weights\.bce: set but nothing reads it: read only with loss\.kind combo/);
    expect(bad({ loss: { kind: 'soft-dice', perImage: true } })).toThrow(/loss\.perImage: set but nothing reads it/);
    expect(bad({ loss: { kind: 'combo', bceLovasz: { lovasz: 0.2 } } })).toThrow(/loss\.bceLovasz\.lovasz: set but nothing reads it: read only with loss\.kind bce-lovasz/);
    expect(bad({ scheduler: { kind: 'cosine', patience: 3 } })).toThrow(/scheduler\.patience: set but nothing reads it: read only by scheduler\.kind plateau, not cosine/);
    expect(bad({ scheduler: { kind: 'plateau', t0: 3 } })).toThrow(/scheduler\.t0: set but nothing reads it/);
    expect(bad({ optimizer: { kind: 'adam', momentum: 0.5 } })).toThrow(/optimizer\.momentum: set but nothing reads it: read only by optimizer\.kind sgd, not adam/);
    expect(bad({ optimizer: { weightDecay: 0, noDecayOnBiasNorm: false } })).toThrow(/optimizer\.noDecayOnBiasNorm: set but nothing reads it: no effect with optimizer\.weightDecay 0/);
    expect(bad({ sampler: { mode: 'positive-only', positiveRate: 0.5 } })).toThrow(/sampler\.positiveRate: set but nothing reads it/);
    expect(bad({ part: 1, model: { fromPart: 0, backbone: 'unet_r18' } })).toThrow(/model\.backbone: set but nothing reads it: the part starts from part 0's best checkpoint/);
    expect(bad({ training: { epochs: 40 }, checkpoints: { keepEpochs: [34, 39, 43] } })).toThrow(/checkpoints\.keepEpochs: set but nothing reads it: epoch\(s\) 43 never run: training\.epochs is 40/);
    expect(bad({ task: 'classify', sampler: { mode: 'all' }, validation: { triplets: [[0.5, 0, 0.5]] } })).toThrow(/validation\.triplets: set but nothing reads it: task classify is scored by ROC AUC/);
    // Read keys pass; inherited keys (extends) are not held to the rule, a file's own keys and overrides are.
    expect(validateConfig({ ...base, loss: { kind: 'bce-lovasz', bceLovasz: { bce: 1, lovasz: 0.2, alpha: 0.3 }, labelWeight: 0.1 } }).loss.bceLovasz).toEqual({ bce: 1, lovasz: 0.2, alpha: 0.3 });
    const dir = mkdtempSync(join(tmpdir(), 'pn-unread-'));
    writeFileSync(join(dir, 'a.yaml'), 'data: { dir: x }\nscheduler: { kind: plateau, patience: 3 }\n');
    writeFileSync(join(dir, 'b.yaml'), 'extends: ./a.yaml\nscheduler: { kind: cosine, tMax: 8 }\n');
    expect(loadConfig(join(dir, 'b.yaml')).scheduler).toMatchObject({ kind: 'cosine', tMax: 8, patience: 3 });
    expect(() => loadConfig(join(dir, 'b.yaml'), { scheduler: { factor: 0.5 } })).toThrow(/scheduler\.factor: set but nothing reads it/);
    // An override that switches the kind does not turn the file's own keys into errors; the file alone must be consistent.
    expect(loadConfig(join(dir, 'a.yaml'), { scheduler: { kind: 'cosine' } }).scheduler.kind).toBe('cosine');
    writeFileSync(join(dir, 'c.yaml'), 'data: { dir: x }\nscheduler: { kind: cosine, patience: 3 }\n');
    expect(() => loadConfig(join(dir, 'c.yaml'), { scheduler: { kind: 'plateau' } })).toThrow(/c\.yaml: invalid experiment config:\n {2}- scheduler\.patience: set but nothing reads it: read only by scheduler\.kind plateau, not cosine/);
    rmSync(dir, { recursive: true, force: true });
  });
  it('every seed recipe starts from ImageNet weights; the synthetic one from random initialisation', () => {
    const root = join(repoRoot, 'models', 'experiments');
    // The seeds start from ImageNet weights; the synthetic demo keeps random initialisation (no network).
    for (const seed of readdirSync(root).filter((d) => d !== 'synthetic' && !d.includes('.'))) {
      for (const file of readdirSync(join(root, seed))) {
        const c = loadConfig(join(root, seed, file));
        if (c.model.fromPart === null) expect(c.model.encoderWeights, `${seed}/${file}`).toBe('imagenet');
      }
    }
    expect(loadConfig(join(root, 'synthetic', 'small.yaml')).model.encoderWeights).toBeNull();
  });
});
