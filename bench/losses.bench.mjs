// Loss bench: the fused combo loss (one forward pass, one backward pass, native/losses/combo.cpp)
// against the same loss as a plain composition of ATen ops under autograd (what a PyTorch training
// script runs), forward + backward in ms, same LibTorch, same threads, same inputs, same run.
// Rounds alternate between the two so that machine load hits both alike.
import { Tensor, losses, getThreads } from '../dist/index.js';

function makeInputs(shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  const t = new Float32Array(n);
  const [, , h, w] = shape;
  let s = 12345;
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < n; i++) {
    x[i] = (rand() + rand() + rand() - 1.5) * 4;
    const y = Math.floor((i % (h * w)) / w);
    const c = i % w;
    t[i] = (y - h / 2) ** 2 + (c - w / 3) ** 2 < (h / 6) ** 2 ? 1 : 0;
  }
  return { x: Tensor.from(x, shape), t: Tensor.from(t, shape) };
}

async function once(kind, x, t, keepGrad = false) {
  const start = process.hrtime.bigint();
  const r = await losses.lossForwardBackward(kind, x, t, losses.COMBO_WEIGHTS.validation);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const grad = keepGrad ? r.grad.takeData('float32') : (r.grad.dispose(), undefined);
  return { ms, loss: r.loss, grad };
}

/** Largest gradient difference between the two, relative to the largest gradient element. */
function gradDifference(a, b) {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** Median of alternating rounds (each round: one fused and one unfused call). */
async function compare(x, t, rounds) {
  const a = await once('combo', x, t, true);
  const b = await once('combo-reference', x, t, true);
  const agreement = { loss: Math.abs(a.loss - b.loss) / Math.abs(b.loss), grad: gradDifference(a.grad, b.grad) };
  const fused = [];
  const unfused = [];
  for (let r = 0; r < rounds; r++) {
    fused.push((await once('combo', x, t)).ms);
    unfused.push((await once('combo-reference', x, t)).ms);
  }
  const median = (v) => v.sort((p, q) => p - q)[Math.floor(v.length / 2)];
  return { fused: median(fused), unfused: median(unfused), agreement };
}

export async function run({ quick, log }) {
  const entries = [];
  const threads = getThreads();
  for (const shape of [
    [4, 1, 512, 512],
    [4, 1, 1024, 1024],
  ]) {
    const { x, t } = makeInputs(shape);
    const rounds = quick ? 5 : shape[2] === 1024 ? 15 : 25;
    const r = await compare(x, t, rounds);
    x.dispose();
    t.dispose();
    const label = `[${shape.join(',')}]`;
    log(`${label}: fused ${r.fused.toFixed(2)} ms, ATen composition ${r.unfused.toFixed(2)} ms (${(r.unfused / r.fused).toFixed(2)}x); loss rel. diff ${r.agreement.loss.toExponential(1)}, gradient ${r.agreement.grad.toExponential(1)}`);
    entries.push({
      group: 'losses',
      name: `combo loss forward+backward ${label} float32`,
      unit: 'ms',
      value: r.fused,
      baseline: { name: 'ATen composition + autograd', value: r.unfused },
      higherIsBetter: false,
      goal: 3,
      notes: `${threads} threads, weights (3,1,4), median of ${rounds} alternating rounds; max gradient difference ${r.agreement.grad.toExponential(1)} of the largest element`,
    });
  }
  return entries;
}
