import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { Random, normal } from '../../src/core/random.js';
import { Optimizer, gradientOf, makeParameter, setGradient, type OptimizerSpec } from '../../src/training/optimizers.js';
import { runTorch, torchAvailable } from './torch-reference.js';

/** A tiny model's parameters: 2-D weights, 1-D biases and norm weights, under encoder/decoder. */
const LAYOUT: [string, number[]][] = [
  ['encoder.conv1.weight', [3, 4]],
  ['encoder.conv1.bias', [3]],
  ['encoder.bn1.weight', [3]],
  ['decoder.head.weight', [2, 3]],
  ['decoder.head.bias', [2]],
];

function initialValues(seed: number): Float64Array[] {
  const rng = new Random(seed);
  return LAYOUT.map(([, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return Float64Array.from({ length: n }, () => normal(rng, 0, 1));
  });
}

/** Targets and curvatures of the quadratic problem: loss = sum c (p - target)^2. */
function problem(seed: number): { target: Float64Array[]; curvature: Float64Array[] } {
  const rng = new Random(seed);
  const target = LAYOUT.map(([, shape]) => Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => normal(rng, 0, 1)));
  const curvature = LAYOUT.map(([, shape]) => Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 0.5 + rng.next() * 2));
  return { target, curvature };
}

function makeParams(values: Float64Array[]): [string, Tensor][] {
  return LAYOUT.map(([name, shape], i) => {
    const t = Tensor.from(values[i]!, shape);
    const p = makeParameter(t);
    t.dispose();
    return [name, p];
  });
}

/** Runs `steps` steps of the quadratic problem natively; returns the parameter values after each step. */
async function runNative(spec: OptimizerSpec, steps: number, seed = 1): Promise<Float64Array[][]> {
  const params = makeParams(initialValues(seed));
  const { target, curvature } = problem(seed + 1);
  const opt = Optimizer.create(params, spec);
  const history: Float64Array[][] = [];
  for (let s = 0; s < steps; s++) {
    opt.zeroGrad();
    params.forEach(([, p], i) => {
      const v = p.dataSync('float64');
      const g = Float64Array.from(v, (x, k) => 2 * curvature[i]![k]! * (x - target[i]![k]!));
      const gt = Tensor.from(g, p.shape);
      setGradient(p, gt);
      gt.dispose();
    });
    await opt.step();
    history.push(params.map(([, p]) => p.dataSync('float64')));
  }
  opt.dispose();
  return history;
}

function pyGroups(spec: OptimizerSpec): string {
  // The same grouping by hand: (prefix rule, 1-D or not), in order of first appearance.
  const rules = spec.lrRules ?? [];
  const groups: { names: string[]; lr: number; wd: number }[] = [];
  const keyOf = new Map<string, number>();
  for (const [name, shape] of LAYOUT) {
    const r = rules.findIndex(([prefix]) => name.startsWith(prefix));
    const decay = shape.length > 1 || spec.decayBiasesAndNorms === true;
    const key = `${r}/${decay}`;
    if (!keyOf.has(key)) {
      keyOf.set(key, groups.length);
      groups.push({ names: [], lr: r >= 0 ? rules[r]![1] : (spec.lr ?? 1e-3), wd: decay ? (spec.weightDecay ?? 0) : 0 });
    }
    groups[keyOf.get(key)!]!.names.push(name);
  }
  const index = new Map(LAYOUT.map(([name], i) => [name, i]));
  return `[${groups.map((g) => `{'params': [params[${g.names.map((n) => index.get(n)).join('], params[')}]], 'lr': ${g.lr}, 'weight_decay': ${g.wd}}`).join(', ')}]`;
}

function pyOptimizer(spec: OptimizerSpec): string {
  const groups = pyGroups(spec);
  const betas = `(${spec.beta1 ?? 0.9}, ${spec.beta2 ?? 0.999})`;
  switch (spec.algorithm) {
    case 'adam': return `torch.optim.Adam(${groups}, betas=${betas}, eps=${spec.eps ?? 1e-8})`;
    case 'adamw': return `torch.optim.AdamW(${groups}, betas=${betas}, eps=${spec.eps ?? 1e-8})`;
    case 'radam': return `torch.optim.RAdam(${groups}, betas=${betas}, eps=${spec.eps ?? 1e-8})`;
    case 'sgd': return `torch.optim.SGD(${groups}, momentum=${spec.momentum ?? 0}, dampening=${spec.dampening ?? 0}, nesterov=${spec.nesterov ? 'True' : 'False'})`;
  }
}

/**
 * Runs each spec for `steps` steps of the quadratic problem with torch.optim (all in one Python
 * process); returns the parameter values after each step, by spec name.
 */
function runPython(specs: Record<string, OptimizerSpec>, steps: number, seed = 1): Record<string, Float64Array[][]> {
  const values = initialValues(seed);
  const { target, curvature } = problem(seed + 1);
  const inputs: Record<string, { data: Float64Array; shape: number[] }> = {};
  LAYOUT.forEach(([, shape], i) => {
    inputs[`p${i}`] = { data: values[i]!, shape };
    inputs[`t${i}`] = { data: target[i]!, shape };
    inputs[`c${i}`] = { data: curvature[i]!, shape };
  });
  const names = Object.keys(specs);
  const body = `
n = ${LAYOUT.length}
def run(name, make):
    params = [inp['p%d' % i].clone().requires_grad_(True) for i in range(n)]
    opt = make(params)
    for s in range(${steps}):
        opt.zero_grad()
        loss = sum((inp['c%d' % i] * (params[i] - inp['t%d' % i]) ** 2).sum() for i in range(n))
        loss.backward()
        opt.step()
        for i in range(n):
            out['%s_%d_%d' % (name, s, i)] = params[i].detach().clone()
${names.map((name, k) => `run('o${k}', lambda params: ${pyOptimizer(specs[name]!)})`).join('\n')}
`;
  const out = runTorch(body, inputs);
  return Object.fromEntries(
    names.map((name, k) => [name, Array.from({ length: steps }, (_, s) => LAYOUT.map((_, i) => out[`o${k}_${s}_${i}`]!))]),
  );
}

function expectClose(a: Float64Array[][], b: Float64Array[][], rtol: number): void {
  expect(a.length).toBe(b.length);
  for (let s = 0; s < a.length; s++) {
    for (let i = 0; i < a[s]!.length; i++) {
      const x = a[s]![i]!;
      const y = b[s]![i]!;
      for (let k = 0; k < x.length; k++) {
        const err = Math.abs(x[k]! - y[k]!) / Math.max(1, Math.abs(y[k]!));
        if (!(err <= rtol)) throw new Error(`step ${s}, ${LAYOUT[i]![0]}[${k}]: ${x[k]} vs ${y[k]} (error ${err})`);
      }
    }
  }
}

/** RAdam as published (Liu et al. 2019; PyTorch's form), element by element, no torch involved. */
function radamReference(spec: OptimizerSpec, steps: number, seed = 1): Float64Array[][] {
  const values = initialValues(seed).map((v) => Float64Array.from(v));
  const { target, curvature } = problem(seed + 1);
  const b1 = spec.beta1 ?? 0.9;
  const b2 = spec.beta2 ?? 0.999;
  const eps = spec.eps ?? 1e-8;
  const m = values.map((v) => new Float64Array(v.length));
  const v2 = values.map((v) => new Float64Array(v.length));
  const rhoInf = 2 / (1 - b2) - 1;
  const history: Float64Array[][] = [];
  for (let t = 1; t <= steps; t++) {
    const c1 = 1 - b1 ** t;
    const c2 = 1 - b2 ** t;
    const rho = rhoInf - (2 * t * b2 ** t) / c2;
    values.forEach((p, i) => {
      const [name, shape] = LAYOUT[i]!;
      const rule = (spec.lrRules ?? []).find(([prefix]) => name.startsWith(prefix));
      const lr = rule ? rule[1] : (spec.lr ?? 1e-3);
      const wd = shape.length > 1 ? (spec.weightDecay ?? 0) : 0;
      for (let k = 0; k < p.length; k++) {
        const g = 2 * curvature[i]![k]! * (p[k]! - target[i]![k]!) + wd * p[k]!;
        m[i]![k] = b1 * m[i]![k]! + (1 - b1) * g;
        v2[i]![k] = b2 * v2[i]![k]! + (1 - b2) * g * g;
        const mHat = m[i]![k]! / c1;
        if (rho > 5) {
          const r = Math.sqrt(((rho - 4) * (rho - 2) * rhoInf) / ((rhoInf - 4) * (rhoInf - 2) * rho));
          p[k] = p[k]! - (lr * r * mHat * Math.sqrt(c2)) / (Math.sqrt(v2[i]![k]!) + eps);
        } else {
          p[k] = p[k]! - lr * mHat;
        }
      }
    });
    history.push(values.map((v) => Float64Array.from(v)));
  }
  return history;
}

const RADAM: OptimizerSpec = { algorithm: 'radam', lr: 1e-2, weightDecay: 1e-4, lrRules: [['encoder.', 5e-3]] };

describe('RAdam', () => {
  it('follows the published update rule step by step (un-adapted steps while rho_t <= 5, rectified after)', async () => {
    const steps = 12; // rho_t crosses 5 at step 6 with beta2 = 0.999
    expectClose(await runNative(RADAM, steps), radamReference(RADAM, steps), 1e-12);
  });

  it.skipIf(!torchAvailable())('matches torch.optim.RAdam', async () => {
    expectClose(await runNative(RADAM, 12), runPython({ radam: RADAM }, 12).radam!, 1e-12);
  });
});

describe.skipIf(!torchAvailable())('LibTorch optimizers vs torch.optim on a tiny quadratic problem', () => {
  const specs: Record<string, OptimizerSpec> = {
    'Adam with L2 decay and encoder/decoder rates': { algorithm: 'adam', lr: 1e-2, weightDecay: 5e-6, lrRules: [['encoder.', 1e-3], ['decoder.', 2e-2]] },
    AdamW: { algorithm: 'adamw', lr: 1e-2, weightDecay: 1e-2, lrRules: [['encoder.', 3e-3]] },
    'SGD with Nesterov momentum': { algorithm: 'sgd', lr: 5e-2, momentum: 0.9, nesterov: true, weightDecay: 1e-3 },
    'SGD with momentum and dampening': { algorithm: 'sgd', lr: 5e-2, momentum: 0.8, dampening: 0.1 },
  };
  let reference: Record<string, Float64Array[][]> = {};
  beforeAll(() => {
    reference = runPython(specs, 8);
  });
  for (const [label, spec] of Object.entries(specs)) {
    it(label, async () => {
      expectClose(await runNative(spec, 8), reference[label]!, 1e-12);
    });
  }
});

describe('parameter groups, clipping, accumulation and state', () => {
  it('turns weight decay off for 1-D parameters and applies learning rates by name prefix', async () => {
    const params = makeParams(initialValues(3));
    const opt = Optimizer.create(params, { algorithm: 'adamw', lr: 0.1, weightDecay: 0.5, lrRules: [['encoder.', 0.01]] });
    expect(opt.groups().map((g) => [g.name, g.lr, g.weightDecay, g.parameters])).toEqual([
      ['encoder.', 0.01, 0.5, ['encoder.conv1.weight']],
      ['encoder./no_decay', 0.01, 0, ['encoder.conv1.bias', 'encoder.bn1.weight']],
      ['', 0.1, 0.5, ['decoder.head.weight']],
      ['/no_decay', 0.1, 0, ['decoder.head.bias']],
    ]);
    // Zero gradients: AdamW moves only by its decoupled decay, p *= 1 - lr * wd, and only for 2-D params.
    const before = params.map(([, p]) => p.dataSync('float64'));
    for (const [, p] of params) {
      const z = Tensor.from(new Float64Array(p.numel), p.shape);
      setGradient(p, z);
      z.dispose();
    }
    await opt.step();
    params.forEach(([name, p], i) => {
      const after = p.dataSync('float64');
      const factor = name === 'encoder.conv1.weight' ? 1 - 0.01 * 0.5 : name === 'decoder.head.weight' ? 1 - 0.1 * 0.5 : 1;
      after.forEach((v, k) => expect(v).toBeCloseTo(before[i]![k]! * factor, 14));
    });
    opt.scaleLr(0.5);
    expect(opt.groups().map((g) => g.lr)).toEqual([0.005, 0.005, 0.05, 0.05]);
    opt.setLr(2, 0.25);
    expect(opt.groups()[2]!.lr).toBe(0.25);
    opt.dispose();
    expect(() => opt.groups()).toThrow(/disposed/);
  });

  it('skips parameters without a gradient (a frozen encoder), decay included, and picks them up once they have one', async () => {
    const params = makeParams(initialValues(12));
    const opt = Optimizer.create(params, { algorithm: 'adamw', lr: 0.1, weightDecay: 0.5 });
    const before = params.map(([, p]) => p.dataSync('float64'));
    const [, head] = params[3]!; // decoder.head.weight
    const g = Tensor.from(new Float64Array(head.numel).fill(1), head.shape);
    setGradient(head, g);
    await opt.step();
    params.forEach(([name, p], i) => {
      if (name === 'decoder.head.weight') expect(p.dataSync('float64')).not.toEqual(before[i]);
      else expect(p.dataSync('float64')).toEqual(before[i]);
    });
    const [, encoderWeight] = params[0]!;
    const ge = Tensor.from(new Float64Array(encoderWeight.numel).fill(1), encoderWeight.shape);
    setGradient(encoderWeight, ge);
    await opt.step();
    expect(encoderWeight.dataSync('float64')).not.toEqual(before[0]);
    expect((await opt.stateDict()).map(([n]) => n)).toContain('optimizer/encoder.conv1.weight/step');
    g.dispose();
    ge.dispose();
    opt.dispose();
  });

  it('clips the global gradient norm like torch.nn.utils.clip_grad_norm_', async () => {
    const params = makeParams(initialValues(4));
    const opt = Optimizer.create(params, { algorithm: 'sgd', lr: 0.1 });
    const grads = initialValues(5);
    params.forEach(([, p], i) => {
      const g = Tensor.from(grads[i]!, p.shape);
      setGradient(p, g);
      g.dispose();
    });
    const norm = Math.sqrt(grads.reduce((s, g) => s + g.reduce((a, x) => a + x * x, 0), 0));
    expect(await opt.gradNorm()).toBeCloseTo(norm, 12);
    expect(await opt.clipGradNorm(1000)).toBeCloseTo(norm, 12);
    expect(gradientOf(params[0]![1])!.dataSync('float64')).toEqual(grads[0]);
    expect(await opt.clipGradNorm(0.1)).toBeCloseTo(norm, 12);
    const coef = 0.1 / (norm + 1e-6);
    params.forEach(([, p], i) => {
      gradientOf(p)!.dataSync('float64').forEach((v, k) => expect(v).toBeCloseTo(grads[i]![k]! * coef, 14));
    });
    expect(await opt.gradNorm()).toBeCloseTo(0.1, 6);
    opt.zeroGrad();
    expect(await opt.gradNorm()).toBe(0);
    await expect(opt.clipGradNorm(0)).rejects.toThrow(/Expected a number > 0 for maxNorm/);
  });

  it('accumulates gradients over several backward passes before one step', async () => {
    const a = makeParams(initialValues(6));
    const b = makeParams(initialValues(6));
    const spec: OptimizerSpec = { algorithm: 'adam', lr: 0.01 };
    const optA = Optimizer.create(a, spec);
    const optB = Optimizer.create(b, spec);
    const g1 = initialValues(7);
    const g2 = initialValues(8);
    a.forEach(([, p], i) => {
      for (const g of [g1, g2]) {
        const t = Tensor.from(g[i]!, p.shape);
        setGradient(p, t, true);
        t.dispose();
      }
    });
    b.forEach(([, p], i) => {
      const t = Tensor.from(Float64Array.from(g1[i]!, (x, k) => x + g2[i]![k]!), p.shape);
      setGradient(p, t);
      t.dispose();
    });
    await optA.step();
    await optB.step();
    a.forEach(([, p], i) => expect(p.dataSync('float64')).toEqual(b[i]![1].dataSync('float64')));
  });

  for (const algorithm of ['adam', 'adamw', 'sgd', 'radam'] as const) {
    it(`${algorithm}: state save -> load gives an identical next step`, async () => {
      const spec: OptimizerSpec = { algorithm, lr: 0.01, weightDecay: 1e-3, momentum: algorithm === 'sgd' ? 0.9 : 0, lrRules: [['decoder.', 0.02]] };
      const history = await runNative(spec, 3, 9);
      const { target, curvature } = problem(10);
      // Rebuild the run to step 3, save, then load into a fresh optimizer over a copy.
      const params = makeParams(initialValues(9));
      const opt = Optimizer.create(params, spec);
      const stepWith = async (o: Optimizer, ps: [string, Tensor][]) => {
        o.zeroGrad();
        ps.forEach(([, p], i) => {
          const v = p.dataSync('float64');
          const g = Tensor.from(Float64Array.from(v, (x, k) => 2 * curvature[i]![k]! * (x - target[i]![k]!)), p.shape);
          setGradient(p, g);
          g.dispose();
        });
        await o.step();
      };
      for (let s = 0; s < 3; s++) await stepWith(opt, params);
      params.forEach(([, p], i) => expect(p.dataSync('float64')).toEqual(history[2]![i]));
      opt.scaleLr(0.5);
      const state = await opt.stateDict();
      const names = state.map(([n]) => n);
      if (algorithm === 'sgd') expect(names).toContain('optimizer/decoder.head.weight/momentum_buffer');
      else expect(names).toEqual(expect.arrayContaining(['optimizer/encoder.conv1.weight/step', 'optimizer/encoder.conv1.weight/exp_avg', 'optimizer/decoder.head.bias/exp_avg_sq']));
      expect(names).toContain('optimizer/group/0/lr');

      const copy: [string, Tensor][] = params.map(([name, p]) => {
        const t = Tensor.from(p.dataSync('float64'), p.shape);
        const q = makeParameter(t);
        t.dispose();
        return [name, q];
      });
      const restored = Optimizer.create(copy, spec);
      await restored.loadStateDict(state);
      expect(restored.groups().map((g) => g.lr)).toEqual(opt.groups().map((g) => g.lr));
      await stepWith(opt, params);
      await stepWith(restored, copy);
      params.forEach(([, p], i) => expect(copy[i]![1].dataSync('float64')).toEqual(p.dataSync('float64')));

      await expect(restored.loadStateDict([['optimizer/nope.weight/exp_avg', state[0]![1]]])).rejects.toThrow(/names parameter 'nope.weight'/);
      opt.dispose();
      restored.dispose();
    });
  }

  it('rejects bad specs with messages naming the input', () => {
    const params = makeParams(initialValues(11));
    expect(() => Optimizer.create(params, { algorithm: 'lamb' } as unknown as OptimizerSpec)).toThrow(/spec.algorithm/);
    expect(() => Optimizer.create(params, { algorithm: 'sgd', nesterov: true })).toThrow(/nesterov needs momentum > 0/);
    expect(() => Optimizer.create(params, { algorithm: 'adam', lr: -1 })).toThrow(/spec.lr/);
    expect(() => Optimizer.create(params, { algorithm: 'adam', betas: [0.9, 0.99] } as unknown as OptimizerSpec)).toThrow(/Unknown optimizer option 'betas'/);
    expect(() => Optimizer.create([params[0]!, params[0]!], { algorithm: 'adam' })).toThrow(/appears twice/);
  });
});
