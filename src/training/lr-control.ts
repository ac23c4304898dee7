/**
 * The learning-rate plan of a training part, from its config: the schedule (ReduceLROnPlateau on
 * the validation score, cosine annealing, cosine with warm restarts, constant), an optional linear
 * warm-up over a fraction of the run, as a factor on every parameter group's initial learning rate
 * (so the encoder keeps its own `optimizer.encoderLr`). Closed-form schedules step per epoch, as
 * the seeds' PyTorch schedulers do; the warm-up rises per step. Serialisable for resume.
 */
import type { ExperimentConfig } from './config.js';
import { ConstantLr, CosineAnnealing, CosineWarmRestarts, ReduceLROnPlateau } from './schedules.js';
import type { LrSchedule, PlateauState } from './schedules.js';

export interface LrControlState {
  plateau: PlateauState | null;
}

export class LrControl {
  readonly #schedule: LrSchedule | null;
  #plateau: ReduceLROnPlateau | null;
  /** Warm-up length in epochs (fractional; 0: none). */
  readonly warmupEpochs: number;

  constructor(config: ExperimentConfig, state?: LrControlState) {
    const s = config.scheduler;
    const lr = config.optimizer.lr;
    const etaMin = Math.min(1, s.minLr / lr);
    const epochs = config.training.epochs;
    this.warmupEpochs = s.warmup * epochs;
    this.#schedule = null;
    this.#plateau = null;
    switch (s.kind) {
      case 'plateau':
        this.#plateau = state?.plateau
          ? ReduceLROnPlateau.fromJSON(state.plateau)
          : new ReduceLROnPlateau(1, { mode: 'max', factor: s.factor, patience: s.patience, threshold: s.threshold, cooldown: s.cooldown, minLr: etaMin });
        break;
      case 'cosine':
        this.#schedule = new CosineAnnealing({ baseLr: 1, tMax: s.tMax ?? epochs, etaMin });
        break;
      case 'warm-restarts':
        this.#schedule = new CosineWarmRestarts({ baseLr: 1, t0: s.t0, tMult: s.tMult, etaMin });
        break;
      case 'constant':
        this.#schedule = new ConstantLr(1);
        break;
    }
  }

  /** The factor on the initial learning rates at step `step` of `steps` in epoch `epoch`. */
  factor(epoch: number, step: number, steps: number): number {
    const t = epoch + step / Math.max(1, steps);
    const base = this.#plateau ? this.#plateau.lr : this.#schedule!.lrAt(epoch);
    const warm = this.warmupEpochs > 0 && t < this.warmupEpochs ? Math.max(t, 1 / Math.max(1, steps)) / this.warmupEpochs : 1;
    return base * Math.min(1, warm);
  }

  /** Records a validation score (ReduceLROnPlateau reduces on a plateau). */
  onValidation(score: number): void {
    this.#plateau?.step(score);
  }

  toJSON(): LrControlState {
    return { plateau: this.#plateau ? this.#plateau.toJSON() : null };
  }
}
