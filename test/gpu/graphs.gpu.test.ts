/**
 * Whole-step CUDA graphs (native/train/graphs.cpp) against the eager step on the same GPU: the
 * same losses and weights after 8 Adam steps with clipping and an lr change mid-way (fp32, TF32
 * off, deterministic cuDNN: relative 1e-4, the fused Adam kernel rounds differently from
 * LibTorch's per-parameter Adam); a new batch shape runs eagerly and is recaptured after 3 in a
 * row; freezing the encoder drops the graph; a NaN batch applies nothing and leaves BatchNorm
 * statistics as they were; the fp16 gradient scaler backs off on the device exactly as eagerly;
 * Model.predict through its graph equals the eager forward. Skips with one line without CUDA.
 */
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { setCudnnOptions } from '../../src/core/runtime.js';
import { Random, normal } from '../../src/core/random.js';
import { Model } from '../../src/models/model.js';
import { TrainEngine } from '../../src/training/engine.js';
import type { StepResult, TrainEngineOptions } from '../../src/training/engine.js';
import { announce, relDiff, values } from './cuda.js';

const run = await announce('graphs.gpu');

function batch(n: number, size: number, seed: number, nan = false): { images: Float32Array; masks: Float32Array } {
  const rng = new Random(seed);
  const images = new Float32Array(n * 3 * size * size);
  const masks = new Float32Array(n * size * size);
  for (let b = 0; b < n; b++) {
    const cy = size * (0.3 + 0.4 * rng.next());
    const cx = size * (0.3 + 0.4 * rng.next());
    const r = size * (0.1 + 0.1 * rng.next());
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r ? 1 : 0;
        masks[(b * size + y) * size + x] = inside;
        for (let c = 0; c < 3; c++) images[((b * 3 + c) * size + y) * size + x] = inside + normal(rng, 0, 0.5);
      }
    }
  }
  if (nan) images[7] = Number.NaN;
  return { images, masks };
}

async function step(engine: TrainEngine, d: { images: Float32Array; masks: Float32Array }, n: number, size: number): Promise<StepResult> {
  const x = await Tensor.from(d.images, [n, 3, size, size]).to('cuda');
  const y = await Tensor.from(d.masks, [n, 1, size, size]).to('cuda');
  try {
    return await engine.step(x, y);
  } finally {
    x.dispose();
    y.dispose();
  }
}

async function weights(model: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of await model.stateDict()) {
    if (!name.endsWith('num_batches_tracked')) out.set(name, await values(t));
    t.dispose();
  }
  return out;
}

function worstDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [name, w] of a) worst = Math.max(worst, relDiff(b.get(name)!, w));
  return worst;
}

const ADAM: TrainEngineOptions = {
  optimizer: { algorithm: 'adam', lr: 1e-3, weightDecay: 1e-4 },
  loss: [{ kind: 'combo', options: { bceWeight: 3, diceWeight: 1, focalWeight: 4 } }],
  gradClip: 0.1,
};

describe.skipIf(!run)('whole-step CUDA graphs', () => {
  it('replays match eager steps (8 Adam steps, clip, lr change at step 5); graph status counts', async () => {
    setCudnnOptions({ allowTf32: false, deterministic: true, benchmark: false });
    try {
      const init = await Model.create({ backbone: 'unet_r18', seed: 3, device: 'cuda' });
      const start = await init.stateDict();
      const eagerModel = await Model.create({ backbone: 'unet_r18', seed: 3, device: 'cuda' });
      const graphModel = await Model.create({ backbone: 'unet_r18', seed: 3, device: 'cuda' });
      await eagerModel.loadStateDict(start);
      await graphModel.loadStateDict(start);
      const eager = TrainEngine.create(eagerModel, { ...ADAM, cudaGraphs: 'off' });
      const graph = TrainEngine.create(graphModel, { ...ADAM, cudaGraphs: 'on' });
      const a: StepResult[] = [];
      const b: StepResult[] = [];
      for (let k = 0; k < 8; k++) {
        if (k === 5) {
          eager.setLr(0, 3e-4);
          graph.setLr(0, 3e-4);
        }
        const d = batch(4, 128, 100 + k);
        a.push(await step(eager, d, 4, 128));
        b.push(await step(graph, d, 4, 128));
      }
      console.log(`eager losses ${a.map((r) => r.loss.toFixed(5)).join(' ')} | graph ${b.map((r) => r.loss.toFixed(5)).join(' ')}`);
      expect(b.map((r) => r.graphed)).toEqual([false, false, false, true, true, true, true, true]);
      expect(a.every((r) => !r.graphed && r.stepped)).toBe(true);
      b.forEach((r, k) => {
        expect(r.stepped).toBe(true);
        expect(Math.abs(r.loss - a[k]!.loss) / a[k]!.loss, `loss at step ${k}`).toBeLessThan(1e-4);
        expect(Math.abs(r.gradNorm - a[k]!.gradNorm) / a[k]!.gradNorm, `grad norm at step ${k}`).toBeLessThan(1e-3);
      });
      expect(worstDiff(await weights(eagerModel), await weights(graphModel))).toBeLessThan(1e-4);
      expect(graph.graphStatus()).toMatchObject({ mode: 'on', active: true, captures: 1, replays: 5, eagerSteps: 3, reason: '' });
      expect(eager.graphStatus()).toMatchObject({ mode: 'off', active: false, reason: 'cudaGraphs is off' });
      // Optimizer state written by the graph is LibTorch's: saved, it restores into an eager engine.
      const state = await graph.optimizerState();
      expect(Number((await values(state.get([...state.keys()].find((key) => key.endsWith('/step'))!)!))[0])).toBe(8);
      for (const t of state.values()) t.dispose();
      for (const t of start.values()) t.dispose();
      for (const e of [eager, graph]) e.dispose();
      for (const m of [init, eagerModel, graphModel]) m.dispose();
    } finally {
      setCudnnOptions({ allowTf32: true, deterministic: false });
    }
  });

  it('a new batch shape runs eagerly and is recaptured after 3 in a row; freezing the encoder drops the graph', async () => {
    const model = await Model.create({ backbone: 'unet_r18', seed: 4, device: 'cuda' });
    const engine = TrainEngine.create(model, ADAM);
    const flags: boolean[] = [];
    for (let k = 0; k < 4; k++) flags.push((await step(engine, batch(4, 128, k), 4, 128)).graphed);
    expect(flags).toEqual([false, false, false, true]);
    const other: boolean[] = [];
    for (let k = 0; k < 4; k++) other.push((await step(engine, batch(2, 128, 10 + k), 2, 128)).graphed);
    expect(other).toEqual([false, false, false, true]);
    expect(engine.graphStatus().captures).toBe(2);
    model.freezeEncoder(true);
    const frozen = await step(engine, batch(2, 128, 20), 2, 128);
    expect(frozen.graphed).toBe(false);
    expect(engine.graphStatus().reason).toMatch(/trainable parameters changed/);
    engine.dispose();
    model.dispose();
  });

  it('a NaN batch applies nothing in the graph and keeps BatchNorm statistics', async () => {
    const model = await Model.create({ backbone: 'unet_r18', seed: 5, device: 'cuda' });
    const engine = TrainEngine.create(model, { ...ADAM, cudaGraphs: 'on' });
    for (let k = 0; k < 4; k++) await step(engine, batch(4, 128, k), 4, 128);
    const before = await weights(model);
    const r = await step(engine, batch(4, 128, 9, true), 4, 128);
    expect(r).toMatchObject({ graphed: true, finite: false, stepped: false });
    expect(worstDiff(before, await weights(model))).toBe(0);
    const next = await step(engine, batch(4, 128, 10), 4, 128);
    expect(next).toMatchObject({ graphed: true, finite: true, stepped: true });
    engine.dispose();
    model.dispose();
  });

  it('fp16: the scaler backs off and grows on the device as in eager steps', async () => {
    const scaler = { initScale: 2 ** 40, growthInterval: 2 };
    const init = await Model.create({ backbone: 'unet_r18', seed: 6, device: 'cuda', precision: 'fp16' });
    const start = await init.stateDict();
    const runs: StepResult[][] = [];
    for (const cudaGraphs of ['off', 'on'] as const) {
      const model = await Model.create({ backbone: 'unet_r18', seed: 6, device: 'cuda', precision: 'fp16' });
      await model.loadStateDict(start);
      const engine = TrainEngine.create(model, { ...ADAM, scaler, cudaGraphs });
      const results: StepResult[] = [];
      for (let k = 0; k < 30; k++) results.push(await step(engine, batch(4, 128, 40 + k), 4, 128));
      runs.push(results);
      engine.dispose();
      model.dispose();
    }
    const [eager, graph] = runs as [StepResult[], StepResult[]];
    console.log(`fp16 scale eager ${eager.map((r) => Math.log2(r.lossScale)).join(' ')} | graph ${graph.map((r) => Math.log2(r.lossScale)).join(' ')}`);
    expect(graph.slice(3).every((r) => r.graphed)).toBe(true);
    expect(graph.some((r) => r.graphed && r.overflow)).toBe(true);
    expect(graph.some((r) => r.graphed && r.stepped)).toBe(true);
    // The rule itself, step by step, in the graph: overflow halves, growthInterval finite steps double.
    let scale = 2 ** 40;
    let streak = 0;
    for (const r of graph) {
      if (r.overflow) {
        scale /= 2;
        streak = 0;
      } else if (r.stepped && ++streak >= 2) {
        scale *= 2;
        streak = 0;
      }
      expect(r.lossScale).toBe(scale);
    }
    for (const t of start.values()) t.dispose();
    init.dispose();
  });

  it('Model.predict through its CUDA graph equals the eager forward, with and without TTA', async () => {
    const model = await Model.create({ backbone: 'unet_r18', seed: 7, device: 'cuda' });
    model.eval();
    const d = batch(4, 128, 70);
    const x = await Tensor.from(d.images, [4, 3, 128, 128]).to('cuda');
    for (const tta of [false, true]) {
      const outs: Float32Array[] = [];
      for (let k = 0; k < 4; k++) {
        const p = await model.predict(x, { tta, cudaGraph: k > 0 });
        outs.push(await values(p.mask));
        p.mask.dispose();
      }
      for (let k = 1; k < 4; k++) expect(relDiff(outs[k]!, outs[0]!), `tta ${tta}, call ${k}`).toBeLessThan(1e-5);
    }
    expect(model.graphStatus().replays).toBeGreaterThan(0);
    x.dispose();
    model.dispose();
  });
});
