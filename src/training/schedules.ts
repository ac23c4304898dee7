/**
 * Learning-rate schedules with PyTorch's semantics: ReduceLROnPlateau, CosineAnnealingLR,
 * CosineAnnealingWarmRestarts (T_mult) and a linear warm-up that composes with any of the
 * closed-form ones. Closed-form schedules are pure functions of the epoch (or step, fractional
 * allowed: `lrAt(epoch + i / iters)`); ReduceLROnPlateau is a small state machine. All of them
 * serialise to JSON (`toJSON`, `scheduleFromJSON`) so that a resumed run continues exactly.
 *
 * Schedules compute one learning rate; to drive several parameter groups (encoder/decoder) give
 * the schedule `baseLr: 1` and pass its value to `Optimizer.scaleLr`, which multiplies each group's
 * initial learning rate.
 */
import { assertInteger, assertNumber, assertOneOf, invalidParameterError } from '../core/validate.js';

/** A closed-form schedule: the learning rate at epoch (or step) `t >= 0`. */
export interface LrSchedule {
  lrAt(t: number): number;
  toJSON(): ScheduleJSON;
}

export type ScheduleJSON =
  | { kind: 'constant'; baseLr: number }
  | { kind: 'cosine'; baseLr: number; tMax: number; etaMin: number }
  | { kind: 'cosine-restarts'; baseLr: number; t0: number; tMult: number; etaMin: number }
  | { kind: 'warmup'; baseLr: number; steps: number; startFactor: number; then: ScheduleJSON };

function checkTime(t: number): void {
  assertNumber('t', t, 0);
}

/** A fixed learning rate. */
export class ConstantLr implements LrSchedule {
  constructor(readonly baseLr: number) {
    assertNumber('baseLr', baseLr, 0);
  }

  lrAt(t: number): number {
    checkTime(t);
    return this.baseLr;
  }

  toJSON(): ScheduleJSON {
    return { kind: 'constant', baseLr: this.baseLr };
  }
}

/**
 * CosineAnnealingLR: etaMin + (baseLr - etaMin) (1 + cos(pi t / tMax)) / 2 (past tMax the cosine
 * continues, as PyTorch's does).
 */
export class CosineAnnealing implements LrSchedule {
  readonly baseLr: number;
  readonly tMax: number;
  readonly etaMin: number;

  constructor(options: { baseLr: number; tMax: number; etaMin?: number }) {
    assertNumber('options.baseLr', options.baseLr, 0);
    assertNumber('options.tMax', options.tMax);
    if (!(options.tMax > 0)) throw invalidParameterError('options.tMax', 'a number > 0', options.tMax);
    assertNumber('options.etaMin', options.etaMin ?? 0, 0);
    this.baseLr = options.baseLr;
    this.tMax = options.tMax;
    this.etaMin = options.etaMin ?? 0;
  }

  lrAt(t: number): number {
    checkTime(t);
    return this.etaMin + ((this.baseLr - this.etaMin) * (1 + Math.cos((Math.PI * t) / this.tMax))) / 2;
  }

  toJSON(): ScheduleJSON {
    return { kind: 'cosine', baseLr: this.baseLr, tMax: this.tMax, etaMin: this.etaMin };
  }
}

/**
 * CosineAnnealingWarmRestarts (SGDR): cosine from baseLr to etaMin over t0 epochs, then restarts,
 * each period tMult times longer than the last.
 */
export class CosineWarmRestarts implements LrSchedule {
  readonly baseLr: number;
  readonly t0: number;
  readonly tMult: number;
  readonly etaMin: number;

  constructor(options: { baseLr: number; t0: number; tMult?: number; etaMin?: number }) {
    assertNumber('options.baseLr', options.baseLr, 0);
    assertInteger('options.t0', options.t0, 1);
    assertInteger('options.tMult', options.tMult ?? 1, 1);
    assertNumber('options.etaMin', options.etaMin ?? 0, 0);
    this.baseLr = options.baseLr;
    this.t0 = options.t0;
    this.tMult = options.tMult ?? 1;
    this.etaMin = options.etaMin ?? 0;
  }

  /** Position in the current period and its length (PyTorch's T_cur and T_i for epoch t). */
  period(t: number): { tCur: number; tI: number } {
    checkTime(t);
    if (this.tMult === 1) return { tCur: t % this.t0, tI: this.t0 };
    if (t < this.t0) return { tCur: t, tI: this.t0 };
    const n = Math.floor(Math.log((t / this.t0) * (this.tMult - 1) + 1) / Math.log(this.tMult));
    return { tCur: t - (this.t0 * (this.tMult ** n - 1)) / (this.tMult - 1), tI: this.t0 * this.tMult ** n };
  }

  lrAt(t: number): number {
    const { tCur, tI } = this.period(t);
    return this.etaMin + ((this.baseLr - this.etaMin) * (1 + Math.cos((Math.PI * tCur) / tI))) / 2;
  }

  toJSON(): ScheduleJSON {
    return { kind: 'cosine-restarts', baseLr: this.baseLr, t0: this.t0, tMult: this.tMult, etaMin: this.etaMin };
  }
}

/**
 * Linear warm-up, then `then` shifted by the warm-up: for t < steps the rate rises linearly from
 * startFactor * baseLr to baseLr (PyTorch's LinearLR), after that it is then.lrAt(t - steps).
 * `baseLr` is then's value at its start.
 */
export class LinearWarmup implements LrSchedule {
  readonly steps: number;
  readonly startFactor: number;
  readonly then: LrSchedule;

  constructor(options: { steps: number; startFactor?: number; then: LrSchedule }) {
    assertNumber('options.steps', options.steps, 0);
    assertNumber('options.startFactor', options.startFactor ?? 0, 0, 1);
    if (typeof options.then?.lrAt !== 'function') throw invalidParameterError('options.then', 'a schedule', options.then);
    this.steps = options.steps;
    this.startFactor = options.startFactor ?? 0;
    this.then = options.then;
  }

  get baseLr(): number {
    return this.then.lrAt(0);
  }

  lrAt(t: number): number {
    checkTime(t);
    if (t >= this.steps) return this.then.lrAt(t - this.steps);
    return this.baseLr * (this.startFactor + ((1 - this.startFactor) * t) / this.steps);
  }

  toJSON(): ScheduleJSON {
    return { kind: 'warmup', baseLr: this.baseLr, steps: this.steps, startFactor: this.startFactor, then: this.then.toJSON() };
  }
}

/** Rebuilds a closed-form schedule from its JSON. */
export function scheduleFromJSON(json: ScheduleJSON): LrSchedule {
  if (typeof json !== 'object' || json === null) throw invalidParameterError('json', 'a schedule object', json);
  switch (json.kind) {
    case 'constant': return new ConstantLr(json.baseLr);
    case 'cosine': return new CosineAnnealing(json);
    case 'cosine-restarts': return new CosineWarmRestarts(json);
    case 'warmup': return new LinearWarmup({ steps: json.steps, startFactor: json.startFactor, then: scheduleFromJSON(json.then) });
    default: throw invalidParameterError('json.kind', 'constant, cosine, cosine-restarts or warmup', (json as { kind: unknown }).kind);
  }
}

export interface PlateauOptions {
  /** 'max' for a score (the validation Dice), 'min' for a loss. */
  mode: 'min' | 'max';
  /** Multiplier on a plateau (default 0.1). */
  factor?: number;
  /** Epochs without improvement tolerated before reducing (default 10). */
  patience?: number;
  /** Minimum significant change (default 1e-4). */
  threshold?: number;
  /** 'rel' (best * (1 +- threshold)) or 'abs' (best +- threshold); default 'rel'. */
  thresholdMode?: 'rel' | 'abs';
  /** Epochs to wait after a reduction before counting again (default 0). */
  cooldown?: number;
  /** Lower bound of the rate (default 0). */
  minLr?: number;
  /** Reductions smaller than this are skipped (default 1e-8). */
  eps?: number;
}

export interface PlateauState {
  kind: 'plateau';
  lr: number;
  options: Required<PlateauOptions>;
  best: number | null;
  badEpochs: number;
  cooldownCounter: number;
  lastEpoch: number;
}

/** ReduceLROnPlateau with PyTorch's semantics (one learning rate; see the module comment for groups). */
export class ReduceLROnPlateau {
  #state: PlateauState;

  constructor(lr: number, options: PlateauOptions) {
    assertNumber('lr', lr, 0);
    assertOneOf('options.mode', options.mode, ['min', 'max'] as const);
    const o: Required<PlateauOptions> = {
      mode: options.mode,
      factor: options.factor ?? 0.1,
      patience: options.patience ?? 10,
      threshold: options.threshold ?? 1e-4,
      thresholdMode: options.thresholdMode ?? 'rel',
      cooldown: options.cooldown ?? 0,
      minLr: options.minLr ?? 0,
      eps: options.eps ?? 1e-8,
    };
    assertNumber('options.factor', o.factor, 0);
    if (!(o.factor < 1)) throw invalidParameterError('options.factor', 'a number < 1', o.factor);
    assertInteger('options.patience', o.patience, 0);
    assertNumber('options.threshold', o.threshold, 0);
    assertOneOf('options.thresholdMode', o.thresholdMode, ['rel', 'abs'] as const);
    assertInteger('options.cooldown', o.cooldown, 0);
    assertNumber('options.minLr', o.minLr, 0);
    assertNumber('options.eps', o.eps, 0);
    this.#state = { kind: 'plateau', lr, options: o, best: null, badEpochs: 0, cooldownCounter: 0, lastEpoch: 0 };
  }

  /** Restores a schedule from `toJSON()`. */
  static fromJSON(state: PlateauState): ReduceLROnPlateau {
    if (typeof state !== 'object' || state === null || state.kind !== 'plateau') throw invalidParameterError('state', 'a plateau schedule state', state);
    const s = new ReduceLROnPlateau(state.lr, state.options);
    s.#state = { ...state, options: { ...state.options } };
    return s;
  }

  get lr(): number {
    return this.#state.lr;
  }

  /** The best metric so far (null before the first step). */
  get best(): number | null {
    return this.#state.best;
  }

  #isBetter(value: number, best: number | null): boolean {
    if (best === null) return true;
    const { mode, threshold, thresholdMode } = this.#state.options;
    if (mode === 'min') return thresholdMode === 'rel' ? value < best * (1 - threshold) : value < best - threshold;
    return thresholdMode === 'rel' ? value > best * (threshold + 1) : value > best + threshold;
  }

  /** Records one epoch's metric and returns the learning rate for the next epoch. */
  step(metric: number): number {
    assertNumber('metric', metric);
    const s = this.#state;
    s.lastEpoch += 1;
    if (this.#isBetter(metric, s.best)) {
      s.best = metric;
      s.badEpochs = 0;
    } else {
      s.badEpochs += 1;
    }
    if (s.cooldownCounter > 0) {
      s.cooldownCounter -= 1;
      s.badEpochs = 0;
    }
    if (s.badEpochs > s.options.patience) {
      const reduced = Math.max(s.lr * s.options.factor, s.options.minLr);
      if (s.lr - reduced > s.options.eps) s.lr = reduced;
      s.cooldownCounter = s.options.cooldown;
      s.badEpochs = 0;
    }
    return s.lr;
  }

  toJSON(): PlateauState {
    return { ...this.#state, options: { ...this.#state.options } };
  }
}
