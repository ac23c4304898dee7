// Torch side of the model zoo, shared by native/models/*.cpp (and issue 5's trainer, which takes
// the torch::jit::Module of a pn::Model from here). Never include from the N-API layer (native/binding/).
//
// Every block is a torch::jit::Module built in C++: parameters and buffers registered under the
// Python source's names, and a forward written in TorchScript. The model is therefore a
// TorchScript module from the start: export is save(), a TorchScript encoder plugs in as a
// submodule, and inference can be frozen with conv-BN folding.
#pragma once

#include <torch/script.h>

#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/torch_internal.h"
#include "model_api.h"

namespace pn {

namespace graphs {
struct PredictGraphs;
}

struct Model::Impl {
  torch::jit::Module module;
  ModelSpec spec;
  EncoderInfo encoder;
  at::Device device = at::kCPU;
  bool encoderFrozen = false;
  bool optimizeInference = true;
  /** Frozen eval-mode copy; dropped whenever weights, mode or device may have changed. */
  std::optional<torch::jit::Module> inference;
  /** Serialises work on this model (JS may queue several tasks on one model). */
  std::mutex mutex;
  /** modelPredict's CUDA graphs (native/train/graphs.cpp); null until the first CUDA predict. */
  std::shared_ptr<graphs::PredictGraphs> predictGraphs;
};

/** The model's TorchScript module (for the trainer). Lock impl->mutex while using it. */
inline torch::jit::Module& torchModule(const Model& model) {
  if (!model.defined()) throw Error("model is undefined (disposed or never created)");
  return model.impl()->module;
}

namespace zoo {

using torch::jit::Module;

/** While alive, every module built on this thread joins one new compilation unit (one per model). */
class CompilationScope {
 public:
  CompilationScope();
  ~CompilationScope();
  CompilationScope(const CompilationScope&) = delete;
  CompilationScope& operator=(const CompilationScope&) = delete;

 private:
  std::shared_ptr<torch::jit::CompilationUnit> previous_;
};

/** A module of a fresh class type "__torch__.pn.<type>" with the `training` attribute set. */
Module newModule(const std::string& type);
/** Compiles `source` (TorchScript) as methods of `m`. */
void define(Module& m, const std::string& source);
/** A float formatted as a TorchScript literal. */
std::string literal(double value);
/** `self.<name>` or `getattr(self, "<name>")` for names that are not identifiers ("0"). */
std::string attr(const std::string& name);

struct ConvOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = false;
  /** TensorFlow "same" padding computed from the input size (EfficientNet). */
  bool samePadding = false;
};
/** nn.Conv2d: `weight` [out, in/groups, k, k] and optional `bias`, torchvision's init. */
Module conv2d(int64_t in, int64_t out, int64_t kernel, const ConvOptions& options = {});
/** nn.BatchNorm2d: weight, bias, running_mean, running_var, num_batches_tracked. */
Module batchNorm(int64_t channels, double eps = 1e-5, double momentum = 0.1);
/** nn.Linear with PyTorch's default init. */
Module linear(int64_t in, int64_t out);
/** Calls the named submodules in order (nn.Sequential; names "0", "1", ... as in Python). */
Module sequential(const std::string& type, const std::vector<std::pair<std::string, Module>>& children);

/** A native encoder: forward(x) -> List[Tensor] of the feature maps at strides 2, 4, 8, 16, 32. */
struct Encoder {
  Module module;
  EncoderInfo info;
};
/**
 * Builds a native encoder by name. `outputStride` 16 or 8 replaces the strides of the last
 * stages with dilation (DeepLabV3; ResNet-family encoders only).
 */
Encoder buildEncoder(const std::string& name, int64_t inChannels, int64_t outputStride = 32);
/** Whether `name` is a native encoder. */
bool isNativeEncoder(const std::string& name);
/**
 * Loads a TorchScript encoder and probes its contract (5 maps at strides 2..32). With
 * `dilatedLastStage` (DeepLabV3) the last map may also be at stride 16.
 */
Encoder loadTorchScriptEncoder(const std::string& path, int64_t inChannels, bool dilatedLastStage = false);
/** Puts the decoder, heads and forward around `encoder` as the spec says. */
Module buildModel(const ModelSpec& spec, const Encoder& encoder, int64_t* requiredDivisor);

/** Whether the architecture has auxiliary heads and a `forward_train` method (bisenet.cpp). */
bool hasAuxiliaryHeads(const std::string& architecture);
/** BiSeNet and the dual-attention UNet of the 42nd place (bisenet.cpp). */
Module buildSeed42Model(const ModelSpec& spec, const Encoder& encoder);

/** What a training-mode forward gives: the mask logits, the label logit (if any), auxiliary masks. */
struct TrainForward {
  at::Tensor mask;
  /** Undefined for a model without a classification logit. */
  at::Tensor label;
  /** Auxiliary mask logits at the input size (models with auxiliary heads; empty otherwise). */
  std::vector<at::Tensor> aux;
};
/**
 * The training forward: `forward_train` for models with auxiliary heads, else `forward`, under
 * the model's device settings; outputs in float32.
 */
TrainForward runTrainForward(Model::Impl& impl, torch::jit::Module& module, const at::Tensor& input);

/** Checks an input batch against the model (4-D, channels, size divisible) with a clear error. */
void checkInput(const Model::Impl& impl, const at::Tensor& input);
/** The autocast dtype of the model's precision on its device (kFloat: no autocast). */
at::ScalarType autocastDtype(const Model::Impl& impl);
/** Rejects an unknown precision, and fp16 on a device other than CUDA, naming both. */
void checkPrecision(const std::string& precision, const c10::Device& device);
/** Runs forward under the model's device settings (autocast on CUDA, channels-last). */
c10::IValue runForward(Model::Impl& impl, torch::jit::Module& module, const at::Tensor& input);

}  // namespace zoo
}  // namespace pn
