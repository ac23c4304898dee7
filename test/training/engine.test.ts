/**
 * TrainEngine: one native call per training step. Checked against Python PyTorch doing the same
 * steps on the eager twin of the model (bench/python/models_baseline.py, same parameter names):
 * SGD with momentum, weight decay and clipping over two steps; Adam with gradient accumulation
 * over half-batches. Also: the reported loss equals the JS composition (forward + loss), a NaN
 * batch changes nothing, a frozen encoder stays put, the loss falls on a tiny problem, the
 * classify task trains the head, and the optimizer state round-trips.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { Random, normal } from '../../src/core/random.js';
import { loadBinding } from '../../src/native/binding.js';
import { Model } from '../../src/models/model.js';
import { TrainEngine } from '../../src/training/engine.js';
import type { StepResult, TrainEngineOptions } from '../../src/training/engine.js';
import { lossForwardBackward } from '../../src/training/losses.js';
import { hasPythonTorch, python } from '../models/python.js';

const REFERENCE = fileURLToPath(new URL('./engine_reference.py', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pn-engine-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Images with bright disks and their masks (a learnable toy problem), deterministic. */
function toyBatch(seed: number, batch: number, size: number, channels = 3): { images: Float32Array; masks: Float32Array } {
  const rng = new Random(seed);
  const images = new Float32Array(batch * channels * size * size);
  const masks = new Float32Array(batch * size * size);
  for (let b = 0; b < batch; b++) {
    const cy = size * (0.25 + 0.5 * rng.next());
    const cx = size * (0.25 + 0.5 * rng.next());
    const r = size * (0.1 + 0.15 * rng.next());
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r ? 1 : 0;
        masks[(b * size + y) * size + x] = inside;
        for (let c = 0; c < channels; c++) images[((b * channels + c) * size + y) * size + x] = inside * 1.5 + normal(rng, 0, 0.5);
      }
    }
  }
  return { images, masks };
}

function toyTensors(seed: number, batch: number, size: number): { images: Tensor; masks: Tensor } {
  const { images, masks } = toyBatch(seed, batch, size);
  return { images: Tensor.from(images, [batch, 3, size, size]), masks: Tensor.from(masks, [batch, 1, size, size]) };
}

async function snapshot(model: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of await model.stateDict()) out.set(name, Float32Array.from(await t.data('float32')));
  return out;
}

/** Bitwise equality of two float arrays (vitest's deep equality is far too slow for weights). */
function same(a: Float32Array | undefined, b: Float32Array | undefined): boolean {
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

async function readPt(path: string): Promise<Map<string, Tensor>> {
  return new Map((await loadBinding().readStateDict(path)).map(([k, t]) => [k, new Tensor(t)]));
}

function writeRaw(name: string, data: Float32Array, shape: number[]): { file: string; shape: number[] } {
  const file = join(dir, name);
  writeFileSync(file, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  return { file, shape };
}

/** Largest |a - b| / (1 + |b|) over every tensor of the model against a Python state dict. */
async function worstAgainst(model: Model, reference: Map<string, Tensor>): Promise<{ worst: number; name: string }> {
  let worst = 0;
  let worstName = '';
  for (const [name, t] of await model.stateDict()) {
    const ref = reference.get(name);
    expect(ref, `Python state dict lacks ${name}`).toBeDefined();
    const a = await t.data('float32');
    const b = await ref!.data('float32');
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!));
      if (d > worst) {
        worst = d;
        worstName = name;
      }
    }
  }
  return { worst, name: worstName };
}

const SIZE = 64;

interface Case {
  options: TrainEngineOptions;
  calls: [number, number][];
  batch: number;
  seed: number;
}

interface CaseResult {
  results: StepResult[];
  report: { loss: number[]; gradNorm: (number | null)[] };
  worst: number;
  name: string;
}

/** Runs each case natively, then all of them in one Python process, and compares the weights. */
async function againstPython(cases: Case[]): Promise<CaseResult[]> {
  const runs = [];
  for (const { options, calls, batch, seed } of cases) {
    // Contiguous like the eager reference: the same kernels, so agreement is to rounding.
    const model = await Model.create({ backbone: 'unet_r18', seed, channelsLast: false });
    const weights = join(dir, `start-${seed}.pt`);
    await model.saveStateDict(weights);
    const { images, masks } = toyBatch(seed, batch, SIZE);
    const engine = TrainEngine.create(model, options);
    const results: StepResult[] = [];
    for (const [start, end] of calls) {
      const n = end - start;
      const x = Tensor.from(images.subarray(start * 3 * SIZE * SIZE, end * 3 * SIZE * SIZE), [n, 3, SIZE, SIZE]);
      const y = Tensor.from(masks.subarray(start * SIZE * SIZE, end * SIZE * SIZE), [n, 1, SIZE, SIZE]);
      results.push(await engine.step(x, y));
      x.dispose();
      y.dispose();
    }
    engine.dispose();
    const out = join(dir, `after-${seed}.pt`);
    const config = join(dir, `config-${seed}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        arch: 'unet',
        encoder: 'resnet18',
        weights,
        images: writeRaw(`images-${seed}.bin`, images, [batch, 3, SIZE, SIZE]),
        masks: writeRaw(`masks-${seed}.bin`, masks, [batch, 1, SIZE, SIZE]),
        optimizer: options.optimizer,
        loss: options.loss,
        gradClip: options.gradClip ?? 0,
        accumulation: options.accumulation ?? 1,
        calls,
        out,
      }),
    );
    runs.push({ model, results, config, out });
  }
  const reports = JSON.parse(python([REFERENCE, 'step', ...runs.map((r) => r.config)])) as CaseResult['report'][];
  const out: CaseResult[] = [];
  for (const [k, run] of runs.entries()) {
    const { worst, name } = await worstAgainst(run.model, await readPt(run.out));
    run.model.dispose();
    out.push({ results: run.results, report: reports[k]!, worst, name });
  }
  return out;
}

describe.skipIf(!hasPythonTorch)('TrainEngine against Python PyTorch', () => {
  let sgd: CaseResult;
  let adam: CaseResult;
  beforeAll(async () => {
    [sgd, adam] = await againstPython([
      {
        options: {
          optimizer: { algorithm: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 1e-4 },
          loss: [
            { kind: 'combo', options: { bceWeight: 3, diceWeight: 1, focalWeight: 4 } },
            { kind: 'soft-dice', weight: 0.5 },
          ],
          gradClip: 0.5,
        },
        calls: [
          [0, 2],
          [2, 4],
        ],
        batch: 4,
        seed: 11,
      },
      {
        // eps 1e-4: Adam's first step is lr * g / (|g| + eps), a sign for |g| >> eps; with a
        // larger eps, gradients that are float noise around 0 cannot flip a whole lr-sized update.
        options: { optimizer: { algorithm: 'adam', lr: 1e-3, weightDecay: 1e-4, eps: 1e-4 }, loss: [{ kind: 'combo' }], accumulation: 2 },
        calls: [
          [0, 2],
          [2, 4],
        ],
        batch: 4,
        seed: 12,
      },
    ]) as [CaseResult, CaseResult];
  }, 300_000);

  it('SGD with momentum, weight decay and clipping: two steps equal PyTorch (combo + soft Dice)', () => {
    const { results, report, worst, name } = sgd;
    for (let k = 0; k < 2; k++) {
      expect(results[k]!.stepped).toBe(true);
      expect(results[k]!.finite).toBe(true);
      expect(Math.abs(results[k]!.loss - report.loss[k]!) / report.loss[k]!).toBeLessThan(1e-5);
      expect(Math.abs(results[k]!.gradNorm - report.gradNorm[k]!) / report.gradNorm[k]!).toBeLessThan(1e-4);
      expect(results[k]!.gradNorm).toBeGreaterThan(0.5); // so the clip was active
    }
    expect(worst, `worst at ${name}`).toBeLessThan(1e-5);
  });

  it('Adam with accumulation 2: two half-batches equal PyTorch accumulating them', () => {
    const { results, report, worst, name } = adam;
    expect(results.map((r) => r.stepped)).toEqual([false, true]);
    expect(Number.isNaN(results[0]!.gradNorm)).toBe(true);
    for (let k = 0; k < 2; k++) expect(Math.abs(results[k]!.loss - report.loss[k]!) / report.loss[k]!).toBeLessThan(1e-5);
    expect(Math.abs(results[1]!.gradNorm - report.gradNorm[1]!) / report.gradNorm[1]!).toBeLessThan(1e-4);
    expect(worst, `worst at ${name}`).toBeLessThan(1e-5);
  });
});

describe('TrainEngine', () => {
  it('reports the loss of the JS composition (train-mode forward + lossForwardBackward)', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 3 });
    const { images, masks } = toyTensors(3, 2, SIZE);
    const options = { bceWeight: 2, diceWeight: 1, focalWeight: 2 };
    model.train();
    const out = await model.forward(images);
    const ref = await lossForwardBackward('combo', out.mask, masks, options);
    const engine = TrainEngine.create(model, { optimizer: { algorithm: 'adam', lr: 1e-4 }, loss: [{ kind: 'combo', weight: 0.5, options }] });
    const result = await engine.step(images, masks);
    expect(Math.abs(result.loss - 0.5 * ref.loss) / ref.loss).toBeLessThan(1e-5);
    expect(result).toMatchObject({ finite: true, stepped: true });
    expect(result.gradNorm).toBeGreaterThan(0);
    engine.dispose();
    model.dispose();
  });

  it('a NaN batch: finite false, nothing stepped, weights and BatchNorm statistics unchanged, accumulation reset', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 4 });
    const engine = TrainEngine.create(model, { optimizer: { algorithm: 'adam', lr: 1e-2 }, loss: [{ kind: 'combo' }], accumulation: 2 });
    const { images, masks } = toyBatch(4, 2, SIZE);
    const good = Tensor.from(images, [2, 3, SIZE, SIZE]);
    const y = Tensor.from(masks, [2, 1, SIZE, SIZE]);
    expect((await engine.step(good, y)).stepped).toBe(false);
    expect(engine.pending).toBe(1);
    const before = await snapshot(model);
    const bad = images.slice();
    bad[123] = Number.NaN;
    const result = await engine.step(Tensor.from(bad, [2, 3, SIZE, SIZE]), y);
    expect(result.finite).toBe(false);
    expect(result.stepped).toBe(false);
    expect(Number.isNaN(result.gradNorm)).toBe(true);
    expect(engine.pending).toBe(0);
    const after = await snapshot(model);
    for (const [name, values] of before) expect(same(after.get(name), values), name).toBe(true);
    // The next good pair of calls steps normally.
    expect((await engine.step(good, y)).stepped).toBe(false);
    const stepped = await engine.step(good, y);
    expect(stepped).toMatchObject({ finite: true, stepped: true });
    engine.dispose();
    model.dispose();
  });

  it('respects a frozen encoder: encoder weights stay, decoder weights move', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 5 });
    const engine = TrainEngine.create(model, { optimizer: { algorithm: 'adam', lr: 1e-2 }, loss: [{ kind: 'combo' }] });
    const { images, masks } = toyTensors(5, 2, SIZE);
    await engine.step(images, masks); // the encoder gets gradients and Adam state first
    model.freezeEncoder(true);
    const before = await snapshot(model);
    await engine.step(images, masks);
    await engine.step(images, masks);
    const after = await snapshot(model);
    let decoderMoved = 0;
    for (const [name, values] of before) {
      if (name.startsWith('encoder.') && !/running_|num_batches/.test(name)) expect(same(after.get(name), values), name).toBe(true);
      if (name.startsWith('decoder.') && name.endsWith('weight') && !same(after.get(name), values)) decoderMoved++;
    }
    expect(decoderMoved).toBeGreaterThan(0);
    engine.dispose();
    model.dispose();
  });

  it('the loss falls over 20 steps on a tiny synthetic problem', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 6 });
    const engine = TrainEngine.create(model, {
      optimizer: { algorithm: 'adam', lr: 3e-3 },
      loss: [{ kind: 'combo', options: { bceWeight: 1, diceWeight: 1, focalWeight: 1 } }],
      gradClip: 1,
    });
    const losses: number[] = [];
    for (let step = 0; step < 20; step++) {
      const { images, masks } = toyTensors(100 + (step % 5), 4, SIZE);
      const r = await engine.step(images, masks);
      expect(r.finite).toBe(true);
      losses.push(r.loss);
      images.dispose();
      masks.dispose();
    }
    const first = losses.slice(0, 3).reduce((a, b) => a + b) / 3;
    const last = losses.slice(-3).reduce((a, b) => a + b) / 3;
    expect(last).toBeLessThan(0.7 * first);
    expect(model.training).toBe(true);
    engine.dispose();
    model.dispose();
  });

  it('classify task: BCE + focal on the label and BCE on the mask train the head; it needs a head and labels', async () => {
    const plain = await Model.create({ backbone: 'tiny_unet_r18', seed: 7 });
    expect(() => TrainEngine.create(plain, { optimizer: { algorithm: 'adam' }, task: 'classify' })).toThrow(/classification head/);
    plain.dispose();
    const model = await Model.create({ backbone: 'tiny_unet_r18', classificationHead: true, seed: 7 });
    const engine = TrainEngine.create(model, { optimizer: { algorithm: 'adam', lr: 1e-3 }, task: 'classify', labelWeight: 1, maskWeight: 0.5 });
    const { images, masks } = toyTensors(7, 2, SIZE);
    await expect(engine.step(images, masks)).rejects.toThrow(/Expected labels/);
    const before = await snapshot(model);
    const result = await engine.step(images, masks, Tensor.from(new Float32Array([0, 1]), [2]));
    expect(result).toMatchObject({ finite: true, stepped: true });
    expect(result.loss).toBeGreaterThan(0);
    const after = await snapshot(model);
    const head = [...before.keys()].filter((k) => k.startsWith('classification_head'));
    expect(head.length).toBeGreaterThan(0);
    for (const name of head) expect(same(after.get(name), before.get(name)), name).toBe(false);
    await expect(engine.step(images, masks, Tensor.from(new Float32Array([0, 1, 1]), [3]))).rejects.toThrow(/Expected labels of shape \[2\]/);
    engine.dispose();
    model.dispose();
  });

  it('learning rates, optimizer state round trip, checkpoint, and clear errors', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 8 });
    const options: TrainEngineOptions = {
      optimizer: { algorithm: 'adam', lr: 1e-3, weightDecay: 1e-5, lrRules: [['encoder.', 1e-4]] },
      loss: [{ kind: 'combo' }, { kind: 'lovasz', weight: 0.1 }, { kind: 'balanced-bce', weight: 0.5, options: { alpha: 0.3 } }],
    };
    const engine = TrainEngine.create(model, options);
    const groups = engine.groups;
    expect(groups.map((g) => g.name).sort()).toEqual(['', '/no_decay', 'encoder.', 'encoder./no_decay']);
    engine.scaleLr(0.5);
    expect(engine.groups.map((g) => g.lr)).toEqual(groups.map((g) => g.initialLr * 0.5));
    engine.setLr(0, 2e-4);
    expect(engine.groups[0]!.lr).toBe(2e-4);
    const { images, masks } = toyTensors(8, 2, SIZE);
    expect((await engine.step(images, masks)).stepped).toBe(true);
    const state = await engine.optimizerState();
    expect([...state.keys()].every((k) => k.startsWith('optimizer/'))).toBe(true);
    expect(await state.get('optimizer/group/0/lr')!.item()).toBeCloseTo(2e-4, 12);
    const path = join(dir, 'engine-checkpoint.pt');
    await model.save(path, { optimizer: state });
    const loaded = await Model.loadCheckpoint(path);
    const again = TrainEngine.create(loaded.model, options);
    await again.loadOptimizerState(loaded.optimizer);
    expect(again.groups.map((g) => g.lr)).toEqual(engine.groups.map((g) => g.lr));
    // Same state, same weights, same batch: the next step lands on the same weights.
    await engine.step(images, masks);
    await again.step(images, masks);
    const a = await snapshot(model);
    const b = await snapshot(loaded.model);
    for (const [name, values] of a) expect(same(b.get(name), values), name).toBe(true);

    expect(() => TrainEngine.create(model, { optimizer: { algorithm: 'adam' } })).toThrow(/at least one loss term/);
    expect(() => TrainEngine.create(model, { optimizer: { algorithm: 'adam' }, loss: [{ kind: 'dice' as never }] })).toThrow(
      /Expected one of combo, soft-dice, balanced-bce, lovasz for options.loss\[0\].kind but received "dice"/,
    );
    expect(() => TrainEngine.create(model, { optimizer: { algorithm: 'adam' }, loss: [{ kind: 'combo' }], accumulation: 0 })).toThrow(/options.accumulation/);
    expect(() => engine.setLr(9, 1e-3)).toThrow(/group index/);
    await expect(engine.step(images, Tensor.from(new Float32Array(2 * 32 * 32), [2, 1, 32, 32]))).rejects.toThrow(/Expected masks of shape \[2, classes, 64, 64\]/);
    engine.dispose();
    expect(() => engine.groups).toThrow(/disposed/);
    again.dispose();
    loaded.model.dispose();
    model.dispose();
  });
});
