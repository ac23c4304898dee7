// The torch-free C++ API of pneumo-native's model zoo (encoders, decoders, checkpoints).
//
// The N-API layer (native/binding/) includes this header (never torch): every function succeeds or throws pn::Error.
// The torch side of a model (the torch::jit::Module, for issue 5's trainer) is reached through
// model_internal.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"

namespace pn {

/** What to build: an architecture over an encoder (names as in models/registry.json). */
struct ModelSpec {
  /** "unet", "scseunet", "albunet", "unetpp", "deeplabv3", "bisenet" or "daunet". */
  std::string architecture;
  /** A native encoder ("resnet34", "se_resnext50_32x4d", "efficientnet-b3", ...) or "torchscript". */
  std::string encoder;
  /** The TorchScript encoder file when encoder == "torchscript". */
  std::string encoderPath;
  /** Decoder widths (empty: the architecture's default). */
  std::vector<int64_t> decoderChannels;
  int64_t classes = 1;
  int64_t inChannels = 3;
  /**
   * Adds a global-pool -> linear -> one-logit head on the deepest encoder feature (bisenet and
   * daunet: returns the logit of their own global-pooling head instead).
   */
  bool classificationHead = false;
  /** Channels-last memory format for weights and inputs. */
  bool channelsLast = false;
  /**
   * Forward precision: "fp32", or autocast in "bf16" (CUDA sm_80+ and CPUs) or "fp16" (CUDA only;
   * training needs the engine's gradient scaler, which it turns on by itself).
   */
  std::string precision = "fp32";
  /** The caller's JSON description of this spec, stored in checkpoints and exports as is. */
  std::string json;
};

/** A built model: a TorchScript module plus its spec and run settings (shared by copies). */
class Model {
 public:
  struct Impl;
  Model();
  explicit Model(std::shared_ptr<Impl> impl);
  bool defined() const { return impl_ != nullptr; }
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

/** The encoder contract: feature maps at these strides with these channels. */
struct EncoderInfo {
  std::vector<int64_t> channels;
  std::vector<int64_t> strides;
  /** Input sizes must be multiples of this (the architecture's own requirement). */
  int64_t requiredDivisor = 32;
};

Model createModel(const ModelSpec& spec, const std::string& device);
/** The encoder's feature channels and strides, and the input size divisor of the model. */
EncoderInfo modelEncoderInfo(const Model& model);
std::string modelSpecJson(const Model& model);

struct ModelOutput {
  Tensor mask;
  /** The classification logit (batch x 1); undefined without a classification head. */
  Tensor label;
};
/** Runs the model (autograd on in training mode, off in eval mode). */
ModelOutput modelForward(const Model& model, const Tensor& input);
/** Runs the encoder alone (eval semantics follow the model's mode): the 5 feature maps. */
std::vector<Tensor> modelEncode(const Model& model, const Tensor& input);
void modelSetTraining(const Model& model, bool training);
bool modelIsTraining(const Model& model);
/** Stops (or restarts) gradients for every encoder parameter; BatchNorm keeps the module's mode. */
void modelFreezeEncoder(const Model& model, bool frozen);
bool modelEncoderFrozen(const Model& model);
/** Changes the forward precision ("fp32" | "bf16" | "fp16") and the spec JSON stored with the model. */
void modelSetPrecision(const Model& model, const std::string& precision, const std::string& specJson);
void modelTo(const Model& model, const std::string& device);
std::string modelDevice(const Model& model);

struct ParameterCounts {
  int64_t total = 0;
  int64_t encoder = 0;
  int64_t decoder = 0;
  int64_t trainable = 0;
};
ParameterCounts modelParameterCounts(const Model& model);

/** Named parameters and buffers ("encoder.layer1.0.conv1.weight", ...), sharing storage. */
std::vector<std::pair<std::string, Tensor>> modelStateDict(const Model& model);

struct StateDictReport {
  int64_t loaded = 0;
  std::vector<std::string> missing;
  std::vector<std::string> unexpected;
};
/**
 * Copies `tensors` into the model's parameters and buffers. `prefix` is prepended to every
 * incoming name ("encoder." loads a bare encoder state dict); with `strict`, a missing or
 * unexpected name is an error. A shape mismatch is always an error naming the tensor.
 */
StateDictReport modelLoadStateDict(const Model& model, const std::vector<std::pair<std::string, Tensor>>& tensors,
                                   const std::string& prefix, bool strict);
/** Reads a state dict written by Python's torch.save (a dict of tensors). */
std::vector<std::pair<std::string, Tensor>> readTorchStateDict(const std::string& path);
/** Writes a state dict that Python's torch.load reads (a dict of tensors, zip format). */
void writeTorchStateDict(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors);

/** One tensor of a safetensors file (the header is parsed in TypeScript). */
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
  /**
   * Element strides of a strided view (torch.save files keep views and transposes); empty means
   * contiguous. [begin, end) then spans the view's elements from its first to its last.
   */
  std::vector<int64_t> strides;
};
/**
 * Reads tensors stored at known byte ranges of a file whose byte buffer starts at `dataOffset`:
 * safetensors, and the storages of torch.save files (their index is read in TypeScript).
 */
std::vector<std::pair<std::string, Tensor>> readSafetensors(const std::string& path, uint64_t dataOffset,
                                                            const std::vector<SafetensorsEntry>& entries);

/** Checkpoint contents besides the model. */
struct CheckpointExtras {
  std::string metadataJson = "{}";
  /** Optimizer state for resume ("optimizer/..." names), filled by the trainer. */
  std::vector<std::pair<std::string, Tensor>> optimizer;
};
/** Writes model + spec + metadata + optimizer state atomically (temp file, then rename). */
void saveCheckpoint(const Model& model, const std::string& path, const CheckpointExtras& extras);
struct LoadedCheckpoint {
  Model model;
  std::string kind;  // "checkpoint" or "export"
  CheckpointExtras extras;
};
/** Loads a checkpoint or an export onto `device` (map_location). */
LoadedCheckpoint loadCheckpoint(const std::string& path, const std::string& device);
/** Writes the model in eval mode as a TorchScript file that Python's torch.jit.load runs. */
void exportTorchScript(const Model& model, const std::string& path);

/** What one diagnostic gradient step saw (loss = mean of squared outputs). */
struct GradientReport {
  double loss = 0;
  double gradientNorm = 0;
  bool finite = false;
  int64_t trainableTensors = 0;
  int64_t tensorsWithGradient = 0;
  int64_t tensorsWithNonzeroGradient = 0;
};
/**
 * Forward, backward on mean(output^2) and, when lr > 0, one plain SGD update of the trainable
 * parameters: a hook for tests, benchmarks and demos (the real training step is the trainer's).
 * Without `statistics` only the loss is read back (no per-tensor gradient checks).
 */
GradientReport modelGradientStep(const Model& model, const Tensor& input, double lr, bool statistics = true);

/** Converts eval-mode inference to a frozen, conv-BN-folded module (rebuilt after changes). */
void modelSetInferenceOptimization(const Model& model, bool enabled);

}  // namespace pn
