/** The model zoo: `Model`, the registry and safetensors. */
export { Model, resolveSpec, resolveDevicePrecision, readWeightsFile } from './model.js';
export { PRECISION_SETTINGS, cpuBf16Support, resolvePrecision, checkPrecisionSetting } from './precision.js';
export type { Precision, PrecisionSetting, PrecisionHardware, CpuBf16Support } from './precision.js';
export type { ModelOptions, ModelSpec, ModelOutput, ModelGraphStatus, Prediction, PredictOptions, ParameterCounts, EncoderInfo, StateDictReport, GradientReport, SaveOptions, LoadOptions, LoadedCheckpoint, LoadStateDictOptions, EncoderWeightsReport } from './model.js';
export { ARCHITECTURES, registry, backbone, backboneNames, encoder, architecture, parseRegistry } from './registry.js';
export type { Architecture, EncoderEntry, ArchitectureEntry, BackboneEntry, Registry, PretrainedEntry } from './registry.js';
export { readSafetensorsHeader, writeSafetensors } from './safetensors.js';
export type { SafetensorsHeader } from './safetensors.js';
export { readTorchFile, readTorchFileIndex, TorchFileError } from './torch-file.js';
export type { TorchFileIndex, TorchFileEntry } from './torch-file.js';
export { fetchPretrained, fetchWeightsFile, listPretrained, verifyPretrained, pretrainedEntry, weightsCacheDir, weightsSource, checksumMatches, resolveEncoderWeights, ChecksumMismatchError } from './weights.js';
export type { FetchWeightsOptions, FetchedWeights, WeightsProgress, PretrainedStatus, VerifyResult } from './weights.js';
