/**
 * `Segmenter`: pneumothorax segmentation for other Node services, safe under concurrency.
 *
 * ```ts
 * const seg = await Segmenter.load('fold0.pt', { size: 512, tta: true });
 * const r = await seg.predict(dicomBytes, { signal: AbortSignal.timeout(5000) });
 * r.positive; r.rle; r.area; r.maxProbability; r.timings;
 * seg.dispose();
 * ```
 *
 * Calls made at the same time are micro-batched (by a {@link MicroBatcher}): each call's image is
 * checked and prepared on arrival, then waits in a queue; a batch of up to `maxBatchSize` calls
 * (same size and TTA) is decoded natively into one tensor and run as one forward once the batch
 * is full or the oldest call has waited `maxWaitMs`. One batch runs at a time (LibTorch already
 * uses every core for it); the next batch's forward overlaps the previous batch's
 * post-processing. The queue holds at most `maxQueue` calls and refuses more with a `QUEUE_FULL`
 * {@link SegmenterError}.
 */
import sharp from 'sharp';
import { closestName } from '../core/edit-distance.js';
import { MicroBatcher } from '../core/micro-batcher.js';
import type { MicroBatch } from '../core/micro-batcher.js';
import { counters, emptyCpuCache } from '../core/runtime.js';
import { Tensor } from '../core/tensor.js';
import { assertInteger, assertNumber, invalidParameterError, is } from '../core/validate.js';
import { imagenetPreprocess, preprocessImages } from '../data/batch.js';
import type { Preprocess } from '../data/batch.js';
import { DicomError } from '../data/dicom.js';
import { EMPTY_RLE, encode as encodeRle, formatRuns } from '../data/rle.js';
import { Model } from '../models/model.js';
import { applyTriplet } from '../scoring/postprocess.js';
import { assertTriplet } from '../scoring/triplet.js';
import type { Triplet } from '../scoring/triplet.js';
import { upsampleMaskAsync } from '../scoring/upsample.js';
import { SegmenterError } from './errors.js';
import { prepareInput } from './input.js';
import type { InputFormat, PreparedInput, SegmenterInput } from './input.js';

/** The first place's best validation triplet (SPEC section 4): (top 0.75, area 2000, bottom 0.3). */
export const DEFAULT_SERVE_TRIPLET: Triplet = [0.75, 2000, 0.3];

/** Options of {@link Segmenter.load} and {@link Segmenter.fromModel}. */
export interface SegmenterOptions {
  /** Where the model runs when loaded from a file: "cpu" (default), "cuda", "cuda:N". */
  device?: string;
  /** Inference size (square; a multiple of the encoder's divisor), default 512. */
  size?: number;
  /**
   * Largest inference size a call may ask for (`SegmentOptions.size`, the server's `?size=`).
   * Default: the model's trained size (the `imgSize` its checkpoint records, `Segmenter.load`),
   * and never below `size`; a larger request is refused with SIZE_TOO_LARGE.
   */
  maxSize?: number;
  /**
   * Budget of working memory for one call, in bytes: a call whose estimated forward memory
   * ({@link Segmenter.estimateMemory}: its size, TTA and the model's measured bytes per pixel)
   * is over it is refused with OVER_MEMORY_BUDGET before anything runs. Default: 2 GiB, or
   * 1.5 x the estimate at `maxSize` with TTA when that is larger (so that the default never
   * refuses a call `maxSize` allows).
   */
  maxRequestBytes?: number;
  /**
   * Decode damaged JPEG data (a truncated or corrupt DICOM JPEG frame or JPEG file) with what
   * cannot be decoded left grey, instead of refusing it with BAD_INPUT (default false).
   */
  acceptDamagedJpeg?: boolean;
  /** Horizontal-flip TTA by default (default false). */
  tta?: boolean;
  /** Default `[top, area, bottom]` triplet (default {@link DEFAULT_SERVE_TRIPLET}). */
  triplet?: Triplet;
  /** The side the triplet's area is counted at (default 1024, SIIM's size). */
  areaSize?: number;
  /**
   * Input normalisation. Default: exactly what validation and `infer` feed the model,
   * `batch.imagenetPreprocess(size, inChannels)` (the training Normalize: ImageNet's per-channel
   * statistics for a 3-channel model, the gray channel's (0.485, 0.229) for a 1-channel one,
   * applied to the resized image rounded to 8 bits as training's uint8 batches are), so a served
   * image gives the probabilities `infer` gives. An explicit `{ mean, std }` overrides the
   * statistics, for a model trained with others: one number for every channel, or one per input
   * channel (x / 255 - mean[c]) / std[c]; the rest of the pre-processing stays the same.
   */
  normalize?: { mean: number | readonly number[]; std: number | readonly number[] };
  /** Most calls in one forward (default 8). */
  maxBatchSize?: number;
  /** Longest a call waits for companions before its batch runs anyway, ms (default 5). */
  maxWaitMs?: number;
  /** Most calls accepted and not yet running (default 64); more are refused with QUEUE_FULL. */
  maxQueue?: number;
  /** Largest image accepted, in pixels (default 4096 x 4096); larger ones get INPUT_TOO_LARGE. */
  maxPixels?: number;
  /**
   * Size of the returned mask: "input" (default) resizes it to the input image's size (bilinear
   * with half-pixel centres on the 0/1 mask, binarised at 0.5, as SIIM masks refer to the 1024
   * images); "model" keeps the inference size.
   */
  maskSize?: 'input' | 'model';
  /** Called after each forward with its size and timings (for an embedder's own metrics). */
  onBatch?: (event: BatchEvent) => void;
}

/** Options of one {@link Segmenter.predict} call; unset ones take the segmenter's defaults. */
export interface SegmentOptions {
  tta?: boolean;
  triplet?: Triplet;
  /** Inference size for this call (calls of different sizes run in different batches). */
  size?: number;
  /** Cancels the call: rejected with ABORTED, and removed from the queue if it has not run yet. */
  signal?: AbortSignal;
}

/** Where a call's time went, in milliseconds. */
export interface SegmentTimings {
  /** Checking and preparing the input, plus its share of the native batch decode. */
  decodeMs: number;
  /** From entering the queue to its batch starting. */
  queueMs: number;
  /** The batch's forward (with TTA when asked). */
  inferenceMs: number;
  /** Triplet, mask resize and RLE encoding. */
  postprocessMs: number;
  /** From the call to its result. */
  totalMs: number;
}

/** The result of one {@link Segmenter.predict} call. */
export interface SegmentResult {
  /** Row-major 0/1 mask, `width` x `height` (see `maskSize`). */
  mask: Uint8Array;
  width: number;
  height: number;
  /** The mask in SIIM RLE (column-major, relative; "-1" when empty). */
  rle: string;
  /** Positive pixels of `mask`. */
  area: number;
  /** Highest probability of the map (before the triplet rule). */
  maxProbability: number;
  /** Whether the triplet rule called the image positive. */
  positive: boolean;
  triplet: Triplet;
  tta: boolean;
  /** Inference size. */
  size: number;
  /** The input's format ("dicom", "png", "jpeg", "raw") and size. */
  input: { format: InputFormat; width: number; height: number };
  /** Calls that shared this call's forward. */
  batchSize: number;
  timings: SegmentTimings;
}

/** Counters of a {@link Segmenter} (for metrics endpoints). */
export interface SegmenterStats {
  /** Calls accepted and waiting (being prepared or queued). */
  queued: number;
  /** Calls in the batch now running (0 when idle). */
  running: number;
  /** Accepted calls that returned a result. */
  completed: number;
  /** Accepted calls that failed, were aborted or were disposed (calls refused at once are not counted). */
  failed: number;
  batches: number;
  /** batchSizes[n]: how many batches had n calls. */
  batchSizes: number[];
}

/** What {@link SegmenterOptions.onBatch} receives after each forward. */
export interface BatchEvent {
  size: number;
  decodeMs: number;
  inferenceMs: number;
}

/** One accepted call with its input prepared: what the micro-batcher queues. */
interface Call {
  started: number;
  prepared: PreparedInput;
  /** From the call to its input prepared. */
  prepareMs: number;
  size: number;
  tta: boolean;
  triplet: Triplet;
}

/** {@link SegmenterOptions} with every default filled in (`Segmenter.options`). */
export interface ResolvedSegmenterOptions {
  size: number;
  maxSize: number;
  maxRequestBytes: number;
  acceptDamagedJpeg: boolean;
  tta: boolean;
  triplet: Triplet;
  areaSize: number;
  /** The statistics per input channel (see SegmenterOptions.normalize). */
  normalize: { mean: readonly number[]; std: readonly number[] };
  maxBatchSize: number;
  maxWaitMs: number;
  maxQueue: number;
  maxPixels: number;
  maskSize: 'input' | 'model';
}

/** Every key of {@link SegmenterOptions}: anything else is a mistake, named with the closest key. */
const OPTION_KEYS = [
  'device',
  'size',
  'maxSize',
  'maxRequestBytes',
  'acceptDamagedJpeg',
  'tta',
  'triplet',
  'areaSize',
  'normalize',
  'maxBatchSize',
  'maxWaitMs',
  'maxQueue',
  'maxPixels',
  'maskSize',
  'onBatch',
] as const satisfies readonly (keyof SegmenterOptions)[];

/** Throws a TypeError naming the first key of `options` that is not an option (and the closest one). */
function checkOptionKeys(options: object, keys: readonly string[], what: string): void {
  for (const key of Object.keys(options)) {
    if (!keys.includes(key)) {
      const prefixed = keys.filter((k) => k.toLowerCase().startsWith(key.toLowerCase())).sort((x, y) => x.length - y.length);
      const near = prefixed[0] ?? closestName(key, keys);
      throw new TypeError(`Unknown option ${JSON.stringify(key)} for ${what}${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}; known: ${keys.join(', ')}`);
    }
  }
}

/** The default memory budget of one call (see SegmenterOptions.maxRequestBytes). */
const DEFAULT_REQUEST_BYTES = 2 * 1024 ** 3;

function defaultBudget(estimate: (size: number, tta: boolean) => number, maxSize: number): number {
  return Math.max(DEFAULT_REQUEST_BYTES, Math.ceil(1.5 * estimate(maxSize, true)));
}

/**
 * The normalisation per input channel: the inference default (`imagenetPreprocess`), or the
 * explicit override (a number or 1 value for every channel, else one per channel), checked.
 */
function resolveNormalize(option: SegmenterOptions['normalize'], channels: 1 | 3): ResolvedSegmenterOptions['normalize'] {
  if (option === undefined) {
    const { mean, std } = imagenetPreprocess(1, channels);
    return { mean: [...mean], std: [...std] };
  }
  if (typeof option !== 'object' || option === null) throw invalidParameterError('options.normalize', '{ mean, std }', option);
  const perChannel = (name: 'mean' | 'std'): number[] => {
    const value = option[name];
    const values: readonly unknown[] = typeof value === 'number' ? [value] : Array.isArray(value) ? value : [];
    if (values.length !== 1 && values.length !== channels) {
      throw invalidParameterError(`options.normalize.${name}`, `a number or an array of 1 or ${channels} numbers (the model's input channels)`, value);
    }
    values.forEach((v, i) => assertNumber(`options.normalize.${name}${typeof value === 'number' ? '' : `[${i}]`}`, v, name === 'std' ? Number.MIN_VALUE : undefined));
    return Array.from({ length: channels }, (_, c) => values[values.length === 1 ? 0 : c] as number);
  };
  return { mean: perChannel('mean'), std: perChannel('std') };
}

function resolveOptions(
  options: SegmenterOptions,
  divisor: number,
  channels: 1 | 3,
  trainedSize: number | undefined,
  estimate: (size: number, tta: boolean) => number,
): ResolvedSegmenterOptions {
  if (typeof options !== 'object' || options === null) throw invalidParameterError('options', 'an object', options);
  checkOptionKeys(options, OPTION_KEYS, 'the Segmenter');
  const size = options.size ?? 512;
  checkSize('options.size', size, divisor);
  const maxSize = options.maxSize ?? Math.max(trainedSize ?? size, size);
  checkSize('options.maxSize', maxSize, divisor);
  if (maxSize < size) throw invalidParameterError('options.maxSize', `at least options.size (${size})`, maxSize);
  const o: ResolvedSegmenterOptions = {
    size,
    maxSize,
    maxRequestBytes: options.maxRequestBytes ?? defaultBudget(estimate, maxSize),
    acceptDamagedJpeg: options.acceptDamagedJpeg ?? false,
    tta: options.tta ?? false,
    triplet: options.triplet ?? DEFAULT_SERVE_TRIPLET,
    areaSize: options.areaSize ?? 1024,
    normalize: resolveNormalize(options.normalize, channels),
    maxBatchSize: options.maxBatchSize ?? 8,
    maxWaitMs: options.maxWaitMs ?? 5,
    maxQueue: options.maxQueue ?? 64,
    maxPixels: options.maxPixels ?? 4096 * 4096,
    maskSize: options.maskSize ?? 'input',
  };
  assertInteger('options.maxRequestBytes', o.maxRequestBytes, 1, Number.MAX_SAFE_INTEGER);
  if (!is.bool(o.acceptDamagedJpeg)) throw invalidParameterError('options.acceptDamagedJpeg', 'a boolean', o.acceptDamagedJpeg);
  if (!is.bool(o.tta)) throw invalidParameterError('options.tta', 'a boolean', o.tta);
  assertTriplet('options.triplet', o.triplet);
  assertNumber('options.areaSize', o.areaSize, 1, 1 << 20);
  assertInteger('options.maxBatchSize', o.maxBatchSize, 1, 1024);
  assertNumber('options.maxWaitMs', o.maxWaitMs, 0, 60_000);
  assertInteger('options.maxQueue', o.maxQueue, 1, 1_000_000);
  assertInteger('options.maxPixels', o.maxPixels, 1, 1 << 30);
  if (o.maskSize !== 'input' && o.maskSize !== 'model') throw invalidParameterError('options.maskSize', '"input" or "model"', o.maskSize);
  return o;
}

function checkSize(name: string, size: unknown, divisor: number): asserts size is number {
  assertInteger(name, size, divisor, 8192);
  if (size % divisor !== 0) throw invalidParameterError(name, `a multiple of ${divisor} (the encoder's divisor)`, size);
}

function abortError(signal: AbortSignal): SegmenterError {
  const reason: unknown = signal.reason;
  const why = reason instanceof Error && reason.name === 'TimeoutError' ? 'it timed out' : 'its signal was aborted';
  return new SegmenterError('ABORTED', `The segmentation call was aborted: ${why}`, { cause: reason });
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const mib = (bytes: number): string => (bytes / 1024 ** 2).toFixed(0);

/**
 * A first guess of the forward's working memory per input pixel, before `calibrateMemory`
 * measures it: 4 bytes x 6 x (input channels + the sum of the encoder's channels / stride^2).
 * Close for ResNet UNets; wide decoders (AlbuNet) and EfficientNet need 2-4 x more, which the
 * measurement sees.
 */
function forwardBytesPerPixel(model: Model): number {
  const { channels, strides } = model.encoderInfo;
  let floats = model.spec.inChannels;
  for (let l = 0; l < channels.length; l += 1) floats += channels[l]! / (strides[l]! * strides[l]!);
  return 4 * 6 * floats;
}

/** Concurrent-safe, micro-batched segmentation with one model. See the module comment. */
export class Segmenter {
  readonly #model: Model;
  #options: ResolvedSegmenterOptions;
  readonly #onBatch: ((event: BatchEvent) => void) | undefined;
  readonly #divisor: number;
  readonly #batcher: MicroBatcher<Call, SegmentResult>;
  #disposed = false;
  /** A batch's decode or forward is running (the model must outlive it). */
  #inferring = false;
  #batches = 0;
  #batchSizes: number[] = [];
  #bytesPerPixel: number;
  #calibrated = false;
  readonly #explicitBudget: boolean;

  private constructor(model: Model, options: SegmenterOptions, trainedSize: number | undefined) {
    this.#model = model;
    this.#divisor = model.encoderInfo.requiredDivisor;
    this.#bytesPerPixel = forwardBytesPerPixel(model);
    this.#explicitBudget = typeof options === 'object' && options !== null && options.maxRequestBytes !== undefined;
    this.#options = resolveOptions(options, this.#divisor, model.spec.inChannels as 1 | 3, trainedSize, (size, tta) => this.estimateMemory(size, tta));
    this.#onBatch = options.onBatch;
    if (options.onBatch !== undefined && typeof options.onBatch !== 'function') throw invalidParameterError('options.onBatch', 'a function', options.onBatch);
    this.#batcher = new MicroBatcher<Call, SegmentResult>({
      maxBatchSize: this.#options.maxBatchSize,
      maxWaitMs: this.#options.maxWaitMs,
      maxQueue: this.#options.maxQueue,
      key: (call) => `${call.size}/${call.tta}`,
      run: (batch) => this.#runBatch(batch),
      errors: {
        queueFull: (n) => new SegmenterError('QUEUE_FULL', `The segmenter queue is full (${n} calls waiting); retry later`),
        aborted: abortError,
        disposed: () => new SegmenterError('DISPOSED', 'The segmenter was disposed before the call completed'),
      },
    });
    model.eval();
  }

  /**
   * Loads a checkpoint or TorchScript export (see `Model.load`) and wraps it. The segmenter owns
   * the model: `dispose()` frees it.
   */
  static async load(modelPath: string, options: SegmenterOptions = {}): Promise<Segmenter> {
    if (!is.string(modelPath)) throw invalidParameterError('modelPath', 'a model file path', modelPath);
    if (typeof options !== 'object' || options === null) throw invalidParameterError('options', 'an object', options);
    checkOptionKeys(options, OPTION_KEYS, 'Segmenter.load');
    const loaded = await Model.loadCheckpoint(modelPath, options.device === undefined ? {} : { device: options.device });
    for (const t of loaded.optimizer.values()) t.dispose();
    const model = loaded.model;
    const trained = loaded.metadata.imgSize;
    let segmenter: Segmenter | undefined;
    try {
      segmenter = Segmenter.#wrap(model, options, typeof trained === 'number' && Number.isInteger(trained) && trained > 0 ? trained : undefined);
      await segmenter.calibrateMemory();
      return segmenter;
    } catch (err) {
      if (segmenter) segmenter.dispose();
      else model.dispose();
      throw err;
    }
  }

  /**
   * Wraps a model already loaded; the segmenter takes ownership (its `dispose()` frees the model).
   * Without a checkpoint's record of the trained size, `maxSize` defaults to `size`.
   */
  static fromModel(model: Model, options: SegmenterOptions = {}): Segmenter {
    return Segmenter.#wrap(model, options, undefined);
  }

  static #wrap(model: Model, options: SegmenterOptions, trainedSize: number | undefined): Segmenter {
    if (!(model instanceof Model)) throw invalidParameterError('model', 'a Model', model);
    if (model.spec.classes !== 1) throw invalidParameterError('model', 'a model with one output class', `${model.spec.classes} classes`);
    if (model.spec.inChannels !== 1 && model.spec.inChannels !== 3) {
      throw invalidParameterError('model', 'a model with 1 or 3 input channels (gray images)', `${model.spec.inChannels} input channels`);
    }
    return new Segmenter(model, options, trainedSize);
  }

  /**
   * Estimated working memory of one call's forward at `size` (with TTA: two images), in bytes:
   * size^2 x (1 + TTA) x the model's bytes per input pixel, as {@link calibrateMemory} measured
   * it (before that, a first guess from the encoder's widths). This is what `maxRequestBytes` is
   * compared with. Measured: tiny_unet_r18 490, unet_r18 714, unet_ef3 1748, albunet34 2418
   * bytes per pixel, within 10% of the peak resident growth of a real forward.
   */
  estimateMemory(size: number, tta: boolean): number {
    return Math.ceil(size * size * (tta ? 2 : 1) * this.#bytesPerPixel);
  }

  /** Whether {@link calibrateMemory} has measured the model's working memory. */
  get memoryCalibrated(): boolean {
    return this.#calibrated;
  }

  /**
   * Measures the model's forward working memory per input pixel: one forward of a blank
   * 256 x 256 image (after a small one that builds the inference module) with the CPU
   * allocator's cache emptied first; the blocks it then holds are what the forward allocated. `Segmenter.load` calls it; call it after `fromModel` before
   * serving, while no call runs. On CUDA the first guess stays. Resolves with bytes per pixel.
   */
  async calibrateMemory(): Promise<number> {
    if (this.#disposed) throw new SegmenterError('DISPOSED', 'The segmenter has been disposed');
    if (this.#model.device !== 'cpu') return this.#bytesPerPixel;
    const size = Math.ceil(256 / this.#divisor) * this.#divisor;
    const input = await Tensor.zeros([1, this.#model.spec.inChannels, size, size]);
    try {
      // A first, small forward builds the frozen inference module (its one-time copies are not
      // working memory), then the measured one.
      const small = await Tensor.zeros([1, this.#model.spec.inChannels, 2 * this.#divisor, 2 * this.#divisor]);
      try {
        const warm = await this.#model.predict(small, { tta: false });
        warm.mask.dispose();
        warm.label?.dispose();
      } finally {
        small.dispose();
      }
      emptyCpuCache();
      const before = counters().cpuCachedBytes;
      const out = await this.#model.predict(input, { tta: false });
      out.mask.dispose();
      out.label?.dispose();
      const grown = counters().cpuCachedBytes - before;
      if (grown > 0) this.#bytesPerPixel = Math.max(grown / (size * size), this.#bytesPerPixel);
    } finally {
      input.dispose();
    }
    this.#calibrated = true;
    if (!this.#explicitBudget) this.#options = { ...this.#options, maxRequestBytes: defaultBudget((s, t) => this.estimateMemory(s, t), this.#options.maxSize) };
    return this.#bytesPerPixel;
  }

  /** The resolved defaults (size, tta, triplet, queue limits...). */
  get options(): Readonly<ResolvedSegmenterOptions> {
    return this.#options;
  }

  /** "unet on resnet18" style description of the model. */
  describe(): string {
    return this.#model.describe();
  }

  /** Whether `dispose()` (or a finished `close()`) freed the model. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Calls accepted and not yet finished (preparing, queued or running). */
  get pending(): number {
    return this.#batcher.pending;
  }

  /** Queue depth, calls finished and batch-size counts since the segmenter was made. */
  stats(): SegmenterStats {
    const calls = this.#batcher.stats();
    return {
      queued: calls.queued,
      running: calls.running,
      completed: calls.completed,
      failed: calls.failed,
      batches: this.#batches,
      batchSizes: Array.from(this.#batchSizes, (n) => n ?? 0),
    };
  }

  /**
   * Segments one image: a DICOM, PNG or JPEG file's bytes, or raw 8-bit gray pixels.
   * @throws SegmenterError BAD_INPUT, INPUT_TOO_LARGE, QUEUE_FULL, ABORTED or DISPOSED; TypeError
   *   for bad options
   */
  predict(input: SegmenterInput, options: SegmentOptions = {}): Promise<SegmentResult> {
    const started = performance.now();
    if (this.#disposed) return Promise.reject(new SegmenterError('DISPOSED', 'The segmenter has been disposed'));
    if (typeof options !== 'object' || options === null) return Promise.reject(invalidParameterError('options', 'an object', options));
    const o = this.#options;
    const size = options.size ?? o.size;
    const tta = options.tta ?? o.tta;
    const triplet = options.triplet ?? o.triplet;
    const signal = options.signal;
    try {
      checkOptionKeys(options, ['tta', 'triplet', 'size', 'signal'], 'Segmenter.predict');
      checkSize('options.size', size, this.#divisor);
      if (!is.bool(tta)) throw invalidParameterError('options.tta', 'a boolean', tta);
      assertTriplet('options.triplet', triplet);
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidParameterError('options.signal', 'an AbortSignal', signal);
    } catch (err) {
      return Promise.reject(err);
    }
    if (size > o.maxSize) {
      return Promise.reject(new SegmenterError('SIZE_TOO_LARGE', `The inference size ${size} is above this segmenter's limit of ${o.maxSize} (maxSize, --max-size)`));
    }
    const memory = this.estimateMemory(size, tta);
    if (memory > o.maxRequestBytes) {
      return Promise.reject(
        new SegmenterError(
          'OVER_MEMORY_BUDGET',
          `A call at size ${size}${tta ? ' with TTA' : ''} needs about ${mib(memory)} MiB of working memory; the budget is ${mib(o.maxRequestBytes)} MiB per call (maxRequestBytes, --max-request-mb)`,
        ),
      );
    }
    // Refused at once (aborted already, queue full) or accepted: the input is prepared, then queued.
    const call = { started, size, tta, triplet: [...triplet] as Triplet };
    return this.#batcher.submitAsync(
      () => prepareInput(input, o.maxPixels, { acceptDamagedJpeg: o.acceptDamagedJpeg }).then((prepared): Call => ({ ...call, prepared, prepareMs: performance.now() - started })),
      { signal },
    );
  }

  /**
   * Finishes the calls accepted (and any made meanwhile) without waiting for batch windows, then
   * frees the model. Resolves when done.
   */
  async close(): Promise<void> {
    if (this.#disposed) return;
    await this.#batcher.drain();
    this.dispose();
  }

  /**
   * Frees the model now and rejects every call not yet finished with DISPOSED. A forward already
   * running finishes on its thread first; the weights are freed right after it. Idempotent.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#batcher.dispose();
    if (!this.#inferring) this.#free();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #free(): void {
    this.#model.dispose();
  }

  /**
   * The micro-batcher's handler: decodes the batch's images natively into one tensor, runs one
   * forward, lets the next batch start, then post-processes each call (yielding to the event loop
   * between calls). An error of the decode or forward rejects every call of the batch.
   */
  async #runBatch(batch: MicroBatch<Call, SegmentResult>): Promise<void> {
    this.#inferring = true;
    let items = [...batch.items];
    const { size, tta } = items[0]!.value;
    let probs: Float32Array | undefined;
    let decodeMs = 0;
    let inferenceMs = 0;
    try {
      // The native decoder fails a whole batch for one bad image and names it: reject that call
      // and decode the others again.
      let images: Tensor | undefined;
      while (images === undefined && items.length > 0) {
        const t0 = performance.now();
        try {
          // One native pass: decode, resize, round to 8 bits, normalise per channel and replicate
          // the gray image to the model's input channels: inference's pre-processing
          // (imagenetPreprocess by default), so a served image gives infer's probabilities.
          images = await preprocessImages(
            items.map((item) => item.value.prepared.source),
            this.#preprocess(size),
            { acceptDamagedJpeg: this.#options.acceptDamagedJpeg, names: items.map((_, i) => String(i)) },
          );
        } catch (err) {
          const index = err instanceof DicomError ? Number(err.file) : NaN;
          if (!(err instanceof DicomError) || !Number.isInteger(index) || items[index] === undefined) throw err;
          const bad = items[index]!;
          items = items.filter((item) => item !== bad);
          bad.reject(new SegmenterError('BAD_INPUT', `The image cannot be decoded: ${err.reason}`, { cause: err }));
        }
        decodeMs += performance.now() - t0;
      }
      // `items` is now the images' order. Calls aborted meanwhile keep their row (their result is
      // dropped); a batch whose calls all went away skips the forward.
      if (images === undefined || items.every((item) => item.settled) || this.#disposed) {
        images?.dispose();
      } else {
        const t1 = performance.now();
        probs = await this.#forward(images, tta);
        inferenceMs = performance.now() - t1;
      }
    } finally {
      this.#inferring = false;
      // A batch above the default size leaves its working memory cached by the CPU allocator
      // (which keeps up to a quarter of RAM for reuse): give it back to the system now, so a
      // large request does not raise the resident size for good.
      if (size > this.#options.size) emptyCpuCache();
      // Disposed during the forward: the weights are freed now (dispose() rejected the calls).
      if (this.#disposed) this.#free();
    }
    if (this.#disposed) return;
    // Results of calls aborted meanwhile are dropped; the forward still counts as a batch.
    const n = items.length;
    if (probs !== undefined) {
      this.#batches += 1;
      this.#batchSizes[n] = (this.#batchSizes[n] ?? 0) + 1;
      for (let i = 0; i < this.#batchSizes.length; i += 1) this.#batchSizes[i] ??= 0;
      try {
        this.#onBatch?.({ size: n, decodeMs, inferenceMs });
      } catch {
        // An embedder's metrics callback must not fail the calls.
      }
    }
    batch.release(); // the next batch's forward overlaps this batch's post-processing
    if (probs === undefined) return;
    const pixels = size * size;
    for (let i = 0; i < n; i += 1) {
      const item = items[i]!;
      if (item.settled) continue;
      try {
        const result = await this.#postprocess(item.value, probs.subarray(i * pixels, (i + 1) * pixels), {
          decodeMs: item.value.prepareMs + decodeMs,
          queueMs: batch.startedAt - item.enqueuedAt,
          inferenceMs,
          batchSize: n,
        });
        item.resolve(result);
      } catch (err) {
        item.reject(err);
      }
      if (i + 1 < n) await yieldToEventLoop();
    }
  }

  /** The model input's pre-processing at `size`: `imagenetPreprocess(size, inChannels)` unless normalize overrides its statistics. */
  #preprocess(size: number): Preprocess {
    const { mean, std } = this.#options.normalize;
    return { size, channels: this.#model.spec.inChannels as 1 | 3, mean, std };
  }

  /** [B,C,S,S] normalised images (the model's input channels) -> B x S x S probabilities. */
  async #forward(images: Tensor, tta: boolean): Promise<Float32Array> {
    try {
      const out = await this.#model.predict(images, { tta });
      out.label?.dispose();
      return out.mask.takeData('float32');
    } finally {
      images.dispose();
    }
  }

  async #postprocess(
    call: Call,
    map: Float32Array,
    batch: { decodeMs: number; queueMs: number; inferenceMs: number; batchSize: number },
  ): Promise<SegmentResult> {
    const t0 = performance.now();
    const size = call.size;
    let maxProbability = 0;
    for (let i = 0; i < map.length; i += 1) if (map[i]! > maxProbability) maxProbability = map[i]!;
    const rule = applyTriplet(map, size, size, call.triplet, { areaSize: this.#options.areaSize });
    const prepared = call.prepared;
    let mask = rule.mask;
    let width = size;
    let height = size;
    let area = rule.area;
    let rle: string;
    if (this.#options.maskSize === 'input' && (prepared.width !== size || prepared.height !== size)) {
      width = prepared.width;
      height = prepared.height;
      const resized = await upsampleMaskAsync(rule.mask, size, size, height, width);
      ({ mask, area } = resized);
      rle = formatRuns(resized.runs);
    } else {
      rle = area === 0 ? EMPTY_RLE : encodeRle(mask, width, height);
    }
    const now = performance.now();
    return {
      mask,
      width,
      height,
      rle,
      area,
      maxProbability,
      positive: rule.positive,
      triplet: call.triplet,
      tta: call.tta,
      size,
      input: { format: prepared.format, width: prepared.width, height: prepared.height },
      batchSize: batch.batchSize,
      timings: {
        decodeMs: batch.decodeMs,
        queueMs: batch.queueMs,
        inferenceMs: batch.inferenceMs,
        postprocessMs: now - t0,
        totalMs: now - call.started,
      },
    };
  }
}

/** A PNG of a 0/1 mask (0 and 255), encoded off the event loop. */
export async function maskToPng(mask: Uint8Array, width: number, height: number): Promise<Buffer> {
  const scaled = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i += 1) scaled[i] = mask[i] ? 255 : 0;
  return sharp(scaled, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png({ compressionLevel: 6 }).toBuffer();
}
