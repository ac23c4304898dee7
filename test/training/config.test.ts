import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
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

  it('ships valid recipes for the first and second places', () => {
    const root = join(repoRoot, 'models', 'experiments');
    const experiments = readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory());
    expect(experiments.map((d) => d.name).sort()).toEqual(['albunet_valid', 'resnet50', 'seunet', 'synthetic', 'unet_se50']);
    for (const exp of experiments) {
      for (const file of readdirSync(join(root, exp.name))) loadConfig(join(root, exp.name, file));
    }
    const albunet2 = loadConfig(join(root, 'albunet_valid', '2nd_stage.yaml'));
    expect(albunet2).toMatchObject({ part: 3, secondStage: true, model: { backbone: 'albunet34', fromPart: 2 }, sampler: { positiveRate: 0.5, positiveRateEnd: 0.4 } });
    expect(albunet2.optimizer.lr).toBe(1e-5);
    expect(loadConfig(join(root, 'resnet50', 'part0.yaml')).loss.weights).toEqual({ bce: 2, dice: 1, focal: 2 });
    expect(loadConfig(join(root, 'unet_se50', 'part0.yaml'))).toMatchObject({ sampler: { mode: 'positive-only' }, loss: { kind: 'soft-dice', perImage: true }, scheduler: { kind: 'warm-restarts' } });
    expect(loadConfig(join(root, 'synthetic', 'small.yaml'))).toMatchObject({ model: { backbone: 'tiny_unet_r18' }, data: { imgSize: 256 }, folds: { use: [0] } });
    // The seeds start from ImageNet weights; the synthetic demo keeps random initialisation (no network).
    for (const seed of ['albunet_valid', 'resnet50', 'seunet', 'unet_se50']) {
      for (const file of readdirSync(join(root, seed))) expect(loadConfig(join(root, seed, file)).model.encoderWeights, `${seed}/${file}`).toBe('imagenet');
    }
    expect(loadConfig(join(root, 'synthetic', 'small.yaml')).model.encoderWeights).toBeNull();
  });
});
