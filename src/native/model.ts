/**
 * The model slice of the N-API boundary: native/binding/model.cc over native/models/model_api.h
 * (and prediction, native/train/train_api.h).
 */
import type { NativeNamedTensors, NativeTensor } from './tensor.js';

/** What `createModel` builds (see native/models/model_api.h, ModelSpec). */
export interface NativeModelSpec {
  architecture: string;
  encoder: string;
  encoderPath?: string;
  decoderChannels?: number[];
  classes?: number;
  inChannels?: number;
  classificationHead?: boolean;
  channelsLast?: boolean;
  /** "fp32" | "bf16" | "fp16" (resolved; no "auto"). */
  precision?: string;
  /** Stored verbatim in checkpoints and exports. */
  json?: string;
}

export interface NativeEncoderInfo {
  channels: number[];
  strides: number[];
  requiredDivisor: number;
}

export interface NativeParameterCounts {
  total: number;
  encoder: number;
  decoder: number;
  trainable: number;
}

export interface NativeStateDictReport {
  loaded: number;
  missing: string[];
  unexpected: string[];
}

export interface NativeGradientReport {
  loss: number;
  gradientNorm: number;
  finite: boolean;
  trainableTensors: number;
  tensorsWithGradient: number;
  tensorsWithNonzeroGradient: number;
}

/** The wrapped pn::Model (a TorchScript module built natively). Throws once disposed. */
export interface NativeModel {
  readonly disposed: boolean;
  readonly training: boolean;
  readonly encoderFrozen: boolean;
  readonly device: string;
  readonly specJson: string;
  readonly encoderInfo: NativeEncoderInfo;
  dispose(): void;
  forward(input: NativeTensor): Promise<{ mask: NativeTensor; label?: NativeTensor }>;
  encode(input: NativeTensor): Promise<NativeTensor[]>;
  train(on: boolean): void;
  freezeEncoder(frozen: boolean): void;
  /** Sets the resolved precision and the spec JSON saved with the model. */
  setPrecision(precision: string, specJson: string): void;
  parameterCounts(): NativeParameterCounts;
  to(device: string): Promise<void>;
  stateDict(): Promise<NativeNamedTensors>;
  loadStateDict(tensors: NativeNamedTensors, prefix: string, strict: boolean): Promise<NativeStateDictReport>;
  saveCheckpoint(path: string, metadataJson: string, optimizer?: NativeNamedTensors): Promise<void>;
  exportTorchScript(path: string): Promise<void>;
  gradientStep(input: NativeTensor, lr: number, statistics?: boolean): Promise<NativeGradientReport>;
  setInferenceOptimization(enabled: boolean): void;
}

export interface NativeLoadedModel {
  model: NativeModel;
  kind: 'checkpoint' | 'export';
  metadataJson: string;
  optimizer: NativeNamedTensors;
}

export interface NativeSafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** See native/train/train_api.h, ModelGraphStatus. */
export interface NativeModelGraphStatus {
  graphs: number;
  captures: number;
  replays: number;
  eagerCalls: number;
  reason: string;
}

/** The model exports (NativeModel methods are on the model). */
export interface ModelBinding {
  createModel(spec: NativeModelSpec, device: string): Promise<NativeModel>;
  loadModel(path: string, device: string): Promise<NativeLoadedModel>;
  readStateDict(path: string): Promise<NativeNamedTensors>;
  writeStateDict(path: string, tensors: NativeNamedTensors): Promise<void>;
  readSafetensors(path: string, dataOffset: number, entries: NativeSafetensorsEntry[]): Promise<NativeNamedTensors>;
  /** Eval-mode sigmoid probabilities, optionally with flip TTA as one batched forward. */
  modelPredict(model: NativeModel, input: NativeTensor, tta: boolean, cudaGraph?: boolean): Promise<{ mask: NativeTensor; label?: NativeTensor }>;
  /** The model's predict CUDA graphs (native/train/train_api.h, ModelGraphStatus). */
  modelGraphStatus(model: NativeModel): NativeModelGraphStatus;
}
