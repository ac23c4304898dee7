import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { getThreads, setThreads } from '../../src/core/runtime.js';
import { Random, normal } from '../../src/core/random.js';
import { lossForwardBackward, type LossKind, type LossOptions } from '../../src/training/losses.js';
import { runTorch, torchAvailable } from './torch-reference.js';

type TargetKind = 'blobs' | 'empty' | 'full' | 'soft' | 'mixed';

/** Logits ~ N(0, scale) and a target of `kind` ('mixed': some images empty, some with blobs). */
function makeCase(seed: number, shape: number[], kind: TargetKind, scale = 3): { x: Float64Array; t: Float64Array } {
  const rng = new Random(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[i] = normal(rng, 0, scale);
  const t = new Float64Array(n);
  const [b, , h, w] = shape as [number, number, number, number];
  const per = n / b;
  for (let img = 0; img < b; img++) {
    const cy = rng.next() * h;
    const cx = rng.next() * w;
    const r = 2 + rng.next() * (h / 3);
    for (let k = 0; k < per; k++) {
      const y = Math.floor((k % (h * w)) / w);
      const xx = k % w;
      const inside = (y - cy) ** 2 + (xx - cx) ** 2 < r * r ? 1 : 0;
      let v: number;
      if (kind === 'empty') v = 0;
      else if (kind === 'full') v = 1;
      else if (kind === 'soft') v = rng.next();
      else if (kind === 'mixed') v = img % 2 === 0 ? 0 : inside;
      else v = inside;
      t[img * per + k] = v;
    }
  }
  return { x, t };
}

function tensors(c: { x: Float64Array; t: Float64Array }, shape: number[], dtype: 'float32' | 'float64') {
  const data = dtype === 'float32' ? { x: Float32Array.from(c.x), t: Float32Array.from(c.t) } : c;
  return { x: Tensor.from(data.x, shape), t: Tensor.from(data.t, shape), data };
}

/** max |a - b| / max |b| (a scale-aware relative error for gradients with many tiny elements). */
function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

function relError(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);
}

async function evaluate(kind: LossKind, x: Tensor, t: Tensor, options?: LossOptions): Promise<{ loss: number; grad: Float64Array }> {
  const r = await lossForwardBackward(kind, x, t, options);
  return { loss: r.loss, grad: r.grad.takeData('float64') };
}

const SHAPE = [4, 1, 32, 48];
const TARGETS: TargetKind[] = ['blobs', 'empty', 'full', 'soft', 'mixed'];

describe('fused combo loss vs the ATen composition under autograd (native)', () => {
  const optionSets: LossOptions[] = [
    { bceWeight: 3, diceWeight: 1, focalWeight: 4 },
    { bceWeight: 1, diceWeight: 1, focalWeight: 1, perImageDice: true },
    { bceWeight: 2, diceWeight: 1, focalWeight: 2 },
  ];
  for (const dtype of ['float64', 'float32'] as const) {
    for (const target of TARGETS) {
      it(`${dtype}, ${target} targets: loss and gradient match`, async () => {
        for (const [k, options] of optionSets.entries()) {
          const { x, t } = tensors(makeCase(100 + k, SHAPE, target), SHAPE, dtype);
          const fused = await evaluate('combo', x, t, options);
          const reference = await evaluate('combo-reference', x, t, options);
          const tol = dtype === 'float64' ? 1e-10 : 1e-5;
          expect(Number.isFinite(fused.loss)).toBe(true);
          expect(relError(fused.loss, reference.loss)).toBeLessThan(tol);
          expect(maxRelError(fused.grad, reference.grad)).toBeLessThan(tol);
          expect(fused.grad.every(Number.isFinite)).toBe(true);
        }
      });
    }
  }

  it('is deterministic and leaves its inputs untouched', async () => {
    const c = makeCase(7, SHAPE, 'blobs');
    const { x, t } = tensors(c, SHAPE, 'float32');
    const a = await evaluate('combo', x, t, { perImageDice: true });
    const b = await evaluate('combo', x, t, { perImageDice: true });
    expect(b.loss).toBe(a.loss);
    expect(b.grad).toEqual(a.grad);
    expect(x.dataSync()).toEqual(Float32Array.from(c.x));
  });

  it('images spanning several chunks, ragged tails: same loss and gradient; identical for 1 and 2 threads', async () => {
    const shape = [3, 1, 97, 101]; // 9797 pixels per image: two 8192-pixel chunks, a tail that is not a multiple of 8
    const threads = getThreads();
    try {
      for (const dtype of ['float32', 'float64'] as const) {
        for (const perImageDice of [false, true]) {
          const { x, t } = tensors(makeCase(11, shape, 'mixed'), shape, dtype);
          const options = { bceWeight: 3, diceWeight: 1, focalWeight: 4, perImageDice };
          setThreads(2);
          const two = await evaluate('combo', x, t, options);
          setThreads(1);
          const one = await evaluate('combo', x, t, options);
          expect(one.loss).toBe(two.loss);
          expect(one.grad).toEqual(two.grad);
          const reference = await evaluate('combo-reference', x, t, options);
          const tol = dtype === 'float64' ? 1e-10 : 1e-5;
          expect(relError(two.loss, reference.loss)).toBeLessThan(tol);
          expect(maxRelError(two.grad, reference.grad)).toBeLessThan(tol);
        }
      }
    } finally {
      setThreads(threads);
    }
  });

  it('computes float16 logits in float32 (the cast is part of the graph) and returns a float16 gradient', async () => {
    const c = makeCase(21, SHAPE, 'blobs');
    const x16 = Tensor.from(Float32Array.from(c.x), SHAPE, { dtype: 'float16' });
    const x32 = await x16.to('cpu', 'float32');
    const t = Tensor.from(Float32Array.from(c.t), SHAPE);
    const half = await lossForwardBackward('combo', x16, t, { perImageDice: true });
    expect(half.grad.dtype).toBe('float16');
    const full = await evaluate('combo', x32, t, { perImageDice: true });
    expect(half.loss).toBe(full.loss);
    expect(maxRelError(half.grad.takeData('float32'), full.grad)).toBeLessThan(2e-3);
  });

  it('clamps the total at 1e-5 from below, with a zero gradient there', async () => {
    const n = 2 * 16 * 16;
    const x = Tensor.from(new Float32Array(n).fill(-30), [2, 1, 16, 16]);
    const t = Tensor.from(new Float32Array(n), [2, 1, 16, 16]);
    const r = await evaluate('combo', x, t, { diceWeight: 0 });
    expect(r.loss).toBeCloseTo(1e-5, 12);
    expect(r.grad.every((g) => g === 0)).toBe(true);
    const ref = await evaluate('combo-reference', x, t, { diceWeight: 0 });
    expect(ref.loss).toBeCloseTo(1e-5, 12);
  });

  it('keeps a confidently wrong float32 pixel finite (the focal clamp holds on pt exactly)', async () => {
    const x = Tensor.from(Float32Array.from([40, -40, 40, -40]), [1, 4]);
    const t = Tensor.from(Float32Array.from([0, 1, 1, 0]), [1, 4]);
    const r = await evaluate('combo', x, t, { bceWeight: 0, diceWeight: 0, focalWeight: 1 });
    // Two wrong pixels at the clamp: -(1 - 1e-8)^2 log(1e-8) each, averaged over 4.
    expect(r.loss).toBeCloseTo((2 * -Math.log(1e-8) * (1 - 1e-8) ** 2) / 4, 4);
    expect(r.grad.every(Number.isFinite)).toBe(true);
  });

  it('rejects mismatched shapes and unknown options with clear errors', async () => {
    const x = Tensor.from(new Float32Array(8), [2, 4]);
    const t = Tensor.from(new Float32Array(6), [2, 3]);
    await expect(lossForwardBackward('combo', x, t)).rejects.toThrow(/target shape \[2, 3\] does not match logits shape \[2, 4\]/);
    await expect(lossForwardBackward('combo', x, x, { focal: 1 } as LossOptions)).rejects.toThrow(/Unknown loss option 'focal'/);
    await expect(lossForwardBackward('dice' as LossKind, x, x)).rejects.toThrow(/Expected one of combo/);
    const ints = Tensor.from(new Int32Array(8), [2, 4]);
    await expect(lossForwardBackward('combo', ints, x)).rejects.toThrow(/logits must be a floating-point tensor/);
  });
});

// Each reference is a Python function (logits, target) -> (loss, grad); one process runs every case of a test.
const COMBO_PY = `
def combo(x, t, wb, wd, wf, per_image):
    x = x.to(torch.float64).requires_grad_(True)
    t = t.to(torch.float64)
    p = torch.sigmoid(x)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, t)
    if per_image:
        b = x.shape[0]
        pi, ti = p.reshape(b, -1), t.reshape(b, -1)
        dice = (1 - (2 * (pi * ti).sum(1) + 1e-6) / (pi.sum(1) + ti.sum(1) + 1e-6)).mean()
    else:
        dice = 1 - (2 * (p * t).sum() + 1e-6) / (p.sum() + t.sum() + 1e-6)
    pc = p.clamp(1e-8, 1 - 1e-8)
    pt = (1 - t) * (1 - pc) + t * pc
    focal = (-(1 - pt) ** 2 * torch.log(pt)).mean()
    loss = (wb * bce + wd * dice + wf * focal).clamp(min=1e-5)
    loss.backward()
    return loss, x.grad
`;

const SOFT_DICE_PY = `
def loss_fn(x, t):
    x = x.clone().requires_grad_(True)
    b = x.shape[0]
    p = torch.sigmoid(x).reshape(b, -1)
    tt = t.reshape(b, -1)
    loss = (1 - (2 * (p * tt).sum(1) + 0.01) / ((p ** 2).sum(1) + (tt ** 2).sum(1) + 0.01)).mean()
    loss.backward()
    return loss, x.grad
`;

const BALANCED_BCE_PY = `
def loss_fn(x, t):
    x = x.clone().requires_grad_(True)
    e = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction='none')
    pos = t > 0.5
    neg = ~pos
    pos_term = e[pos].mean() if pos.any() else torch.zeros(())
    neg_term = e[neg].mean() if neg.any() else torch.zeros(())
    loss = 0.25 * pos_term + 0.75 * neg_term
    loss.backward()
    return loss, x.grad
`;

// Berman's reference (lovasz_losses.py) with per-class margins, per image, symmetric.
const LOVASZ_PY = `
def lovasz_grad(gt_sorted):
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1. - intersection / union
    if p > 1:
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard

def hinge_flat(logits, labels):
    signs = 2. * labels - 1.
    margins = torch.where(labels > 0.5, torch.full_like(labels, 5.0), torch.full_like(labels, 1.0))
    errors = margins - logits * signs
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    grad = lovasz_grad(labels[perm])
    return torch.dot(torch.relu(errors_sorted), grad)

def loss_fn(x, t):
    x = x.clone().requires_grad_(True)
    t = (t > 0.5).to(torch.float64)
    losses = []
    for i in range(x.shape[0]):
        xi, ti = x[i].reshape(-1), t[i].reshape(-1)
        losses.append((hinge_flat(xi, ti) + hinge_flat(-xi, 1 - ti)) / 2)
    loss = torch.stack(losses).mean()
    loss.backward()
    return loss, x.grad
`;

describe.skipIf(!torchAvailable())('losses vs independent PyTorch compositions (/usr/bin/python3 + torch)', () => {
  const comboOptions = [
    { bceWeight: 3, diceWeight: 1, focalWeight: 4, perImageDice: false },
    { bceWeight: 1, diceWeight: 1, focalWeight: 1, perImageDice: true },
  ];
  it('combo loss (float32 and float64 logits, batch and per-image Dice) on every target kind', async () => {
    const cases = TARGETS.flatMap((target, ti) =>
      comboOptions.flatMap((options, k) => (['float32', 'float64'] as const).map((dtype) => ({ target, options, dtype, c: makeCase(200 + 10 * ti + k, SHAPE, target) }))),
    );
    const inputs: Record<string, { data: Float32Array | Float64Array; shape: number[] }> = {};
    const calls: string[] = [];
    cases.forEach(({ options: o, dtype, c }, i) => {
      inputs[`x${i}`] = { data: dtype === 'float32' ? Float32Array.from(c.x) : c.x, shape: SHAPE };
      inputs[`t${i}`] = { data: dtype === 'float32' ? Float32Array.from(c.t) : c.t, shape: SHAPE };
      calls.push(`out['loss${i}'], out['grad${i}'] = combo(inp['x${i}'], inp['t${i}'], ${o.bceWeight}, ${o.diceWeight}, ${o.focalWeight}, ${o.perImageDice ? 'True' : 'False'})`);
    });
    const ref = runTorch(`${COMBO_PY}\n${calls.join('\n')}\n`, inputs);
    for (const [i, { target, options, dtype, c }] of cases.entries()) {
      const { x, t } = tensors(c, SHAPE, dtype);
      const fused = await evaluate('combo', x, t, options);
      const tol = dtype === 'float64' ? 1e-10 : 1e-5;
      const label = `${target} ${dtype} ${JSON.stringify(options)}`;
      expect(relError(fused.loss, ref[`loss${i}`]![0]!), label).toBeLessThan(tol);
      expect(maxRelError(fused.grad, ref[`grad${i}`]!), label).toBeLessThan(tol);
    }
  });

  for (const [kind, script] of [
    ['soft-dice', SOFT_DICE_PY],
    ['balanced-bce', BALANCED_BCE_PY],
    ['lovasz', LOVASZ_PY],
  ] as const) {
    it(`${kind}: loss and gradient on every target kind`, async () => {
      const cases = TARGETS.map((target) => ({ target, c: makeCase(300, SHAPE, target) }));
      const inputs: Record<string, { data: Float64Array; shape: number[] }> = {};
      cases.forEach(({ c }, i) => {
        inputs[`x${i}`] = { data: c.x, shape: SHAPE };
        inputs[`t${i}`] = { data: c.t, shape: SHAPE };
      });
      const calls = cases.map((_, i) => `out['loss${i}'], out['grad${i}'] = loss_fn(inp['x${i}'], inp['t${i}'])`);
      const ref = runTorch(`${script}\n${calls.join('\n')}\n`, inputs);
      for (const [i, { target, c }] of cases.entries()) {
        const { x, t } = tensors(c, SHAPE, 'float64');
        const ours = await evaluate(kind, x, t);
        expect(Number.isFinite(ours.loss), target).toBe(true);
        expect(relError(ours.loss, ref[`loss${i}`]![0]!), target).toBeLessThan(1e-10);
        expect(maxRelError(ours.grad, ref[`grad${i}`]!), target).toBeLessThan(1e-10);
        // float32 logits: the same loss to float precision.
        const x32 = Tensor.from(Float32Array.from(c.x), SHAPE);
        const ours32 = await evaluate(kind, x32, t);
        expect(relError(ours32.loss, ref[`loss${i}`]![0]!), target).toBeLessThan(1e-5);
      }
    });
  }
});
