import { beforeAll, describe, expect, it } from 'vitest';
import {
  ConstantLr,
  CosineAnnealing,
  CosineWarmRestarts,
  LinearWarmup,
  ReduceLROnPlateau,
  scheduleFromJSON,
  type LrSchedule,
} from '../../src/training/schedules.js';
import { runTorch, torchAvailable } from './torch-reference.js';

/** PyTorch schedulers (python expressions of `opt`, an SGD optimizer with lr 0.1), run for n epochs each. */
interface TorchCase {
  make: string;
  n: number;
  metrics?: number[];
}

/** The learning rates of every case for epochs 0..n-1, from one Python process. */
function torchLrs(cases: Record<string, TorchCase>): Record<string, number[]> {
  const calls = Object.entries(cases).map(
    ([name, c]) => `out['${name}'] = run(lambda opt: ${c.make}, ${c.n}, ${c.metrics ? `[${c.metrics.join(', ')}]` : 'None'})`,
  );
  const script = `
def sequential(opt):
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=5)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    return torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[5])

def run(make, n, metrics):
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=0.1)
    sched = make(opt)
    lrs = []
    for e in range(n):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[e])
    return torch.tensor(lrs, dtype=torch.float64)

${calls.join('\n')}
`;
  const out = runTorch(script, {});
  return Object.fromEntries(Object.keys(cases).map((name) => [name, Array.from(out[name]!)]));
}

function lrsOf(schedule: LrSchedule, n: number): number[] {
  return Array.from({ length: n }, (_, e) => schedule.lrAt(e));
}

function expectAllClose(a: number[], b: number[]): void {
  expect(a.length).toBe(b.length);
  a.forEach((v, i) => {
    if (!(Math.abs(v - b[i]!) <= 1e-12 + 1e-9 * Math.abs(b[i]!))) throw new Error(`epoch ${i}: ${v} vs ${b[i]}`);
  });
}

describe('closed-form schedules (hand-computed values)', () => {
  it('cosine annealing: base at 0, the midpoint at T_max / 2, eta_min at T_max', () => {
    const s = new CosineAnnealing({ baseLr: 1e-4, tMax: 8, etaMin: 1e-7 });
    expect(s.lrAt(0)).toBeCloseTo(1e-4, 15);
    expect(s.lrAt(4)).toBeCloseTo((1e-4 + 1e-7) / 2, 15);
    expect(s.lrAt(8)).toBeCloseTo(1e-7, 15);
    expect(s.lrAt(2)).toBeCloseTo(1e-7 + (1e-4 - 1e-7) * (1 + Math.SQRT1_2) / 2, 15);
  });

  it('warm restarts with T_mult 2: periods of 3, 6, 12 epochs', () => {
    const s = new CosineWarmRestarts({ baseLr: 1, t0: 3, tMult: 2 });
    expect([0, 2, 3, 8, 9, 20, 21].map((e) => s.period(e))).toEqual([
      { tCur: 0, tI: 3 },
      { tCur: 2, tI: 3 },
      { tCur: 0, tI: 6 },
      { tCur: 5, tI: 6 },
      { tCur: 0, tI: 12 },
      { tCur: 11, tI: 12 },
      { tCur: 0, tI: 24 },
    ]);
    expect(s.lrAt(9)).toBe(1);
    expect(s.lrAt(6)).toBeCloseTo(0.5, 15);
  });

  it('linear warm-up rises from startFactor * base, then hands over to the next schedule', () => {
    const s = new LinearWarmup({ steps: 4, startFactor: 0.2, then: new CosineAnnealing({ baseLr: 0.5, tMax: 10 }) });
    expect(lrsOf(s, 5)).toEqual([0.1, 0.2, 0.30000000000000004, 0.4, 0.5].map((v) => expect.closeTo(v, 15)));
    expect(s.lrAt(9)).toBeCloseTo(0.25, 15);
    // Fractional steps (per-iteration schedules) interpolate.
    expect(s.lrAt(0.5)).toBeCloseTo(0.15, 15);
  });

  it('round-trips through JSON', () => {
    const s = new LinearWarmup({ steps: 3, startFactor: 0.1, then: new CosineWarmRestarts({ baseLr: 5e-4, t0: 4, tMult: 2, etaMin: 1e-6 }) });
    const copy = scheduleFromJSON(JSON.parse(JSON.stringify(s)));
    expect(lrsOf(copy, 40)).toEqual(lrsOf(s, 40));
    expect(scheduleFromJSON(new ConstantLr(0.3).toJSON()).lrAt(7)).toBe(0.3);
    expect(() => scheduleFromJSON({ kind: 'step' } as never)).toThrow(/json.kind/);
  });

  it('rejects bad options naming them', () => {
    expect(() => new CosineAnnealing({ baseLr: 1, tMax: 0 })).toThrow(/options.tMax/);
    expect(() => new CosineWarmRestarts({ baseLr: 1, t0: 2, tMult: 1.5 })).toThrow(/options.tMult/);
    expect(() => new ReduceLROnPlateau(1, { mode: 'up' as 'max' })).toThrow(/options.mode/);
    expect(() => new ReduceLROnPlateau(1, { mode: 'max', factor: 1 })).toThrow(/options.factor/);
    expect(() => new CosineAnnealing({ baseLr: 1, tMax: 5 }).lrAt(-1)).toThrow(/for t/);
  });
});

describe('ReduceLROnPlateau (hand-computed)', () => {
  it('mode max, patience 2: reduces after the third epoch without improvement, stops at min lr', () => {
    const s = new ReduceLROnPlateau(1e-4, { mode: 'max', factor: 0.1, patience: 2, minLr: 1e-7 });
    const scores = [0.5, 0.6, 0.6, 0.59, 0.6, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61, 0.61];
    const lrs = scores.map((m) => s.step(m));
    expect(lrs.slice(0, 4)).toEqual([1e-4, 1e-4, 1e-4, 1e-4].map((v) => expect.closeTo(v, 15)));
    expect(lrs[4]).toBeCloseTo(1e-5, 15); // 0.6, 0.59, 0.6 after best 0.6: third bad epoch
    expect(lrs[5]).toBeCloseTo(1e-5, 15); // 0.61 improves
    expect(lrs[8]).toBeCloseTo(1e-6, 15);
    expect(lrs[11]).toBeCloseTo(1e-7, 15);
    expect(lrs[15]).toBeCloseTo(1e-7, 15);
    expect(s.best).toBe(0.61);
    const resumed = ReduceLROnPlateau.fromJSON(JSON.parse(JSON.stringify(s.toJSON())));
    expect(resumed.lr).toBe(s.lr);
    expect(resumed.step(0.7)).toBe(s.step(0.7));
  });
});

const RESTARTS = [
  [3, 2],
  [5, 1],
  [2, 3],
] as const;
const METRICS = [0.5, 0.6, 0.6, 0.59, 0.6, 0.6005, 0.61, 0.605, 0.6, 0.6, 0.6, 0.62, 0.62, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6];
const PLATEAUS = [
  ['max', 'rel', 0, 1e-4],
  ['max', 'abs', 1, 0.01],
  ['min', 'rel', 2, 1e-4],
  ['min', 'abs', 0, 0.005],
] as const;

describe.skipIf(!torchAvailable())('schedules vs torch.optim.lr_scheduler', () => {
  let ref: Record<string, number[]> = {};
  beforeAll(() => {
    const cases: Record<string, TorchCase> = {
      cosine: { make: 'torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=1e-7)', n: 20 },
      warmup: { make: 'sequential(opt)', n: 15 },
    };
    for (const [t0, tMult] of RESTARTS) {
      cases[`restarts_${t0}_${tMult}`] = { make: `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=${t0}, T_mult=${tMult}, eta_min=1e-6)`, n: 40 };
    }
    PLATEAUS.forEach(([mode, thresholdMode, cooldown, threshold], i) => {
      cases[`plateau_${i}`] = {
        make: `torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode='${mode}', factor=0.5, patience=1, threshold=${threshold}, threshold_mode='${thresholdMode}', cooldown=${cooldown}, min_lr=0.01)`,
        n: METRICS.length,
        metrics: METRICS,
      };
    });
    ref = torchLrs(cases);
  });

  it('CosineAnnealingLR (T_max 8, eta_min 1e-7), past T_max too', () => {
    expectAllClose(lrsOf(new CosineAnnealing({ baseLr: 0.1, tMax: 8, etaMin: 1e-7 }), 20), ref.cosine!);
  });

  for (const [t0, tMult] of RESTARTS) {
    it(`CosineAnnealingWarmRestarts (T_0 ${t0}, T_mult ${tMult})`, () => {
      expectAllClose(lrsOf(new CosineWarmRestarts({ baseLr: 0.1, t0, tMult, etaMin: 1e-6 }), 40), ref[`restarts_${t0}_${tMult}`]!);
    });
  }

  it('linear warm-up then cosine (LinearLR + CosineAnnealingLR in SequentialLR)', () => {
    const ours = new LinearWarmup({ steps: 5, startFactor: 0.1, then: new CosineAnnealing({ baseLr: 0.1, tMax: 10, etaMin: 0 }) });
    expectAllClose(lrsOf(ours, 15), ref.warmup!);
  });

  PLATEAUS.forEach(([mode, thresholdMode, cooldown, threshold], i) => {
    it(`ReduceLROnPlateau mode ${mode}, threshold ${thresholdMode} ${threshold}, cooldown ${cooldown}`, () => {
      const ours = new ReduceLROnPlateau(0.1, { mode, factor: 0.5, patience: 1, threshold, thresholdMode, cooldown, minLr: 0.01 });
      const lrs = [0.1, ...METRICS.slice(0, -1).map((m) => ours.step(m))];
      expectAllClose(lrs, ref[`plateau_${i}`]!);
    });
  });
});
