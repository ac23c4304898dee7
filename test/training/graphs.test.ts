/**
 * Whole-step CUDA graphs, what the CPU can check: the capture decision and its reasons (a CPU
 * model, a build without CUDA graphs, gradient accumulation, RAdam, 'off'), 'on' refusing an engine
 * whose step cannot be captured (naming why), option and config validation, eager steps counted
 * and never marked as graphed, and predict's graph status on a CPU model. The graph path itself
 * runs in test/gpu/graphs.gpu.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { Model } from '../../src/models/model.js';
import { TrainEngine } from '../../src/training/engine.js';
import type { TrainEngineOptions } from '../../src/training/engine.js';
import { validateConfig } from '../../src/training/config.js';

const BASE: TrainEngineOptions = {
  optimizer: { algorithm: 'adam', lr: 1e-3 },
  loss: [{ kind: 'combo' }],
  gradClip: 0.1,
};

function batch(n: number, size: number): { x: Tensor; y: Tensor } {
  const images = new Float32Array(n * 3 * size * size).map((_, i) => Math.sin(i * 0.37));
  const masks = new Float32Array(n * size * size).map((_, i) => (i % 7 < 3 ? 1 : 0));
  return { x: Tensor.from(images, [n, 3, size, size]), y: Tensor.from(masks, [n, 1, size, size]) };
}

describe('CUDA graph decisions on the CPU', () => {
  it("auto on a CPU model: every step eager, graphed false, the reason names the device", async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 1 });
    const engine = TrainEngine.create(model, BASE);
    expect(engine.graphStatus()).toMatchObject({ mode: 'auto', active: false, captures: 0, replays: 0, eagerSteps: 0 });
    const { x, y } = batch(2, 64);
    for (let k = 0; k < 5; k++) {
      const r = await engine.step(x, y);
      expect(r).toMatchObject({ graphed: false, stepped: true, finite: true });
    }
    const status = engine.graphStatus();
    expect(status).toMatchObject({ mode: 'auto', active: false, captures: 0, replays: 0, eagerSteps: 5 });
    expect(status.reason).toMatch(/the model is on cpu, not a CUDA device/);
    x.dispose();
    y.dispose();
    engine.dispose();
    model.dispose();
  });

  it('lists every blocker: accumulation and RAdam as well as the device', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 2 });
    const engine = TrainEngine.create(model, { ...BASE, optimizer: { algorithm: 'radam', lr: 1e-3 }, accumulation: 2 });
    const reason = engine.graphStatus().reason;
    expect(reason).toMatch(/gradient accumulation \(2 calls per optimizer step\) runs eagerly/);
    expect(reason).toMatch(/the radam optimizer has no fused CUDA kernel/);
    expect(reason).toMatch(/not a CUDA device/);
    engine.dispose();
    const off = TrainEngine.create(model, { ...BASE, cudaGraphs: 'off' });
    expect(off.graphStatus()).toMatchObject({ mode: 'off', reason: 'cudaGraphs is off' });
    off.dispose();
    model.dispose();
  });

  it("'on' refuses an engine whose step cannot be captured, naming the reasons", async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 3 });
    expect(() => TrainEngine.create(model, { ...BASE, cudaGraphs: 'on' })).toThrow(
      /cudaGraphs is 'on' but this engine's step cannot be captured: .*the model is on cpu, not a CUDA device.*use cudaGraphs 'auto'/,
    );
    expect(() => TrainEngine.create(model, { ...BASE, accumulation: 4, cudaGraphs: 'on' })).toThrow(/gradient accumulation \(4 calls/);
    model.dispose();
  });

  it('validates the option and the config key', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 4 });
    expect(() => TrainEngine.create(model, { ...BASE, cudaGraphs: 'yes' as never })).toThrow(/'auto', 'on' or 'off' for options\.cudaGraphs/);
    model.dispose();
    const config = validateConfig({ data: { dir: '/tmp' } });
    expect(config.training.cudaGraphs).toBe('auto');
    expect(() => validateConfig({ data: { dir: '/tmp' }, training: { cudaGraphs: 'always' } })).toThrow(/training\.cudaGraphs/);
    expect(validateConfig({ data: { dir: '/tmp' }, training: { cudaGraphs: 'off' } }).training.cudaGraphs).toBe('off');
  });

  it('predict on a CPU model runs eagerly and says why; cudaGraph must be a boolean', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 5 });
    expect(model.graphStatus()).toMatchObject({ graphs: 0, captures: 0, replays: 0, eagerCalls: 0, reason: 'no predict call yet' });
    const { x, y } = batch(1, 64);
    const a = await model.predict(x, { tta: true });
    const b = await model.predict(x, { tta: true, cudaGraph: false });
    expect(Array.from(await b.mask.data('float32'))).toEqual(Array.from(await a.mask.data('float32')));
    expect(model.graphStatus()).toMatchObject({ graphs: 0, captures: 0, eagerCalls: 2, reason: 'cudaGraph is off for this call' });
    await model.predict(x);
    expect(model.graphStatus().reason).toMatch(/not a CUDA device/);
    await expect(model.predict(x, { cudaGraph: 'yes' as never })).rejects.toThrow(/options\.cudaGraph/);
    for (const t of [x, y, a.mask, b.mask]) t.dispose();
    model.dispose();
  });
});
