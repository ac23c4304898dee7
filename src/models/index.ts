/** The model zoo: `Model`, the registry and safetensors. */
export { Model, resolveSpec, resolveDevicePrecision } from './model.js';
export { PRECISION_SETTINGS, cpuBf16Support, resolvePrecision, checkPrecisionSetting } from './precision.js';
export type { Precision, PrecisionSetting, PrecisionHardware, CpuBf16Support } from './precision.js';
export type { ModelOptions, ModelSpec, ModelOutput, Prediction, PredictOptions, ParameterCounts, EncoderInfo, StateDictReport, GradientReport, SaveOptions, LoadOptions, LoadedCheckpoint, LoadStateDictOptions } from './model.js';
export { ARCHITECTURES, registry, backbone, backboneNames, encoder, architecture, parseRegistry } from './registry.js';
export type { Architecture, EncoderEntry, ArchitectureEntry, BackboneEntry, Registry } from './registry.js';
export { readSafetensorsHeader, writeSafetensors } from './safetensors.js';
export type { SafetensorsHeader } from './safetensors.js';
