// pn::Model: building, running, freezing, moving and counting a zoo model.
#include <sstream>

#include "../core/torch_compat.h"
#include "model_internal.h"

namespace pn {

Model::Model() = default;
Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

namespace zoo {

namespace {

}  // namespace

at::ScalarType autocastDtype(const Model::Impl& impl) {
  const std::string& p = impl.spec.precision;
  if (p == "bf16") return at::kBFloat16;
  // fp16 autocast is a CUDA precision: a checkpoint trained in fp16 runs in fp32 on a CPU.
  if (p == "fp16") return impl.device.is_cuda() ? at::kHalf : at::kFloat;
  return at::kFloat;
}

void checkPrecision(const std::string& precision, const c10::Device& device) {
  if (precision != "fp32" && precision != "bf16" && precision != "fp16") {
    throw Error("Expected a precision of fp32, bf16 or fp16 but received '" + precision + "'");
  }
  if (precision == "fp16" && !device.is_cuda()) {
    throw Error("precision fp16 needs a CUDA device (received device " + device.str() + "); use bf16 or fp32 on the CPU");
  }
}

void checkInput(const Model::Impl& impl, const at::Tensor& input) {
  const std::string name = impl.spec.architecture + " on " + impl.spec.encoder;
  if (input.dim() != 4) {
    throw Error("Expected a 4-D batch (N x C x H x W) for the input of " + name + " but received shape " + c10::str(input.sizes()));
  }
  if (input.size(1) != impl.spec.inChannels) {
    throw Error("Expected " + std::to_string(impl.spec.inChannels) + " input channels for " + name + " but received " +
                std::to_string(input.size(1)) + " (shape " + c10::str(input.sizes()) + ")");
  }
  const int64_t d = impl.encoder.requiredDivisor;
  if (input.size(2) % d != 0 || input.size(3) % d != 0 || input.size(2) < d || input.size(3) < d) {
    throw Error("Expected input height and width that are positive multiples of " + std::to_string(d) + " for " + name +
                " but received " + std::to_string(input.size(2)) + "x" + std::to_string(input.size(3)));
  }
  if (impl.spec.architecture == "deeplabv3" && impl.module.is_training() && input.size(0) < 2) {
    throw Error("Expected a batch of at least 2 for " + name +
                " in training mode (BatchNorm after ASPP's global pooling) but received a batch of 1");
  }
  if (!input.is_floating_point()) {
    throw Error(std::string("Expected a floating-point input for ") + name + " but received " + c10::toString(input.scalar_type()));
  }
}

c10::IValue runForward(Model::Impl& impl, torch::jit::Module& module, const at::Tensor& input) {
  // The graph executor's profiling and fusion passes buy nothing for these conv nets on CPU and
  // re-profile on every new input shape: run the TorchScript plainly, op by op.
  torch::jit::GraphOptimizerEnabledGuard plain(false);
  at::Tensor x = input.to(impl.device, at::kFloat);
  if (impl.spec.channelsLast) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  compat::AutocastScope autocast(impl.device.type(), autocastDtype(impl));
  return module.forward({x});
}

TrainForward runTrainForward(Model::Impl& impl, torch::jit::Module& module, const at::Tensor& input) {
  TrainForward result;
  if (!hasAuxiliaryHeads(impl.spec.architecture)) {
    const c10::IValue out = runForward(impl, module, input);
    if (out.isTuple()) {
      const auto& elements = out.toTupleRef().elements();
      result.mask = elements[0].toTensor().to(at::kFloat);
      result.label = elements[1].toTensor().to(at::kFloat);
    } else {
      result.mask = out.toTensor().to(at::kFloat);
    }
    return result;
  }
  torch::jit::GraphOptimizerEnabledGuard plain(false);
  at::Tensor x = input.to(impl.device, at::kFloat);
  if (impl.spec.channelsLast) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  c10::IValue out;
  {
    compat::AutocastScope autocast(impl.device.type(), autocastDtype(impl));
    out = module.get_method("forward_train")({x});
  }
  const auto& elements = out.toTupleRef().elements();
  result.mask = elements[0].toTensor().to(at::kFloat);
  result.label = elements[1].toTensor().to(at::kFloat);
  for (const at::Tensor& a : elements[2].toTensorVector()) result.aux.push_back(a.to(at::kFloat));
  return result;
}

}  // namespace zoo

namespace {

Model::Impl& get(const Model& model) {
  if (!model.defined()) throw Error("model is undefined (disposed or never created)");
  return *model.impl();
}

torch::jit::Module encoderOf(Model::Impl& impl) { return impl.module.attr("encoder").toModule(); }

void applyChannelsLast(Model::Impl& impl) {
  if (!impl.spec.channelsLast) return;
  torch::NoGradGuard noGrad;
  for (const at::Tensor& p : impl.module.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

}  // namespace

Model createModel(const ModelSpec& spec, const std::string& device) {
  return guard([&] {
    if (spec.classes < 1) throw Error("Expected a positive number of classes but received " + std::to_string(spec.classes));
    if (spec.inChannels < 1) throw Error("Expected a positive number of input channels but received " + std::to_string(spec.inChannels));
    auto impl = std::make_shared<Model::Impl>();
    impl->spec = spec;
    impl->device = parseDevice(device);
    zoo::checkPrecision(spec.precision, impl->device);
    const int64_t outputStride = spec.architecture == "deeplabv3" ? 16 : 32;
    zoo::CompilationScope unit;
    zoo::Encoder encoder;
    if (spec.encoder == "torchscript") {
      // DeepLabV3 runs ASPP on the deepest map: at output stride 16 for an encoder exported dilated,
      // else at 32 (the rates stay 6/12/18 and the head upsamples to the input size either way).
      encoder = zoo::loadTorchScriptEncoder(spec.encoderPath, spec.inChannels, spec.architecture == "deeplabv3");
    } else {
      if (spec.architecture == "deeplabv3" && spec.encoder.rfind("efficientnet", 0) == 0) {
        throw Error("deeplabv3 takes a ResNet-family encoder (resnet*, se_resnext*), not " + spec.encoder);
      }
      encoder = zoo::buildEncoder(spec.encoder, spec.inChannels, outputStride);
    }
    impl->encoder = encoder.info;
    impl->module = zoo::buildModel(spec, encoder, &impl->encoder.requiredDivisor);
    impl->module.train(true);
    impl->module.to(impl->device);
    applyChannelsLast(*impl);
    return Model(impl);
  });
}

EncoderInfo modelEncoderInfo(const Model& model) { return get(model).encoder; }
std::string modelSpecJson(const Model& model) { return get(model).spec.json; }

ModelOutput modelForward(const Model& model, const Tensor& input) {
  Model::Impl& impl = get(model);
  const at::Tensor& x = unwrap(input);
  return guard([&] {
    std::lock_guard<std::mutex> lock(impl.mutex);
    zoo::checkInput(impl, x);
    c10::IValue out;
    if (impl.module.is_training()) {
      out = zoo::runForward(impl, impl.module, x);
    } else {
      torch::NoGradGuard noGrad;
      if (impl.optimizeInference && impl.spec.precision == "fp32") {
        if (!impl.inference) {
          torch::jit::Module copy = impl.module.clone();
          copy.eval();
          impl.inference = torch::jit::optimize_for_inference(copy);
        }
        out = zoo::runForward(impl, *impl.inference, x);
      } else {
        out = zoo::runForward(impl, impl.module, x);
      }
    }
    ModelOutput result;
    if (out.isTuple()) {
      const auto& elements = out.toTupleRef().elements();
      result.mask = wrap(elements[0].toTensor().to(at::kFloat).contiguous());
      result.label = wrap(elements[1].toTensor().to(at::kFloat).contiguous());
    } else {
      result.mask = wrap(out.toTensor().to(at::kFloat).contiguous());
    }
    return result;
  });
}

std::vector<Tensor> modelEncode(const Model& model, const Tensor& input) {
  Model::Impl& impl = get(model);
  const at::Tensor& x = unwrap(input);
  return guard([&] {
    std::lock_guard<std::mutex> lock(impl.mutex);
    zoo::checkInput(impl, x);
    c10::optional<torch::NoGradGuard> noGrad;
    if (!impl.module.is_training()) noGrad.emplace();
    torch::jit::Module encoder = encoderOf(impl);
    const c10::IValue out = zoo::runForward(impl, encoder, x);
    std::vector<Tensor> features;
    if (out.isTuple()) {
      for (const c10::IValue& v : out.toTupleRef().elements()) features.push_back(wrap(v.toTensor().to(at::kFloat).contiguous()));
    } else {
      for (const at::Tensor& t : out.toTensorVector()) features.push_back(wrap(t.to(at::kFloat).contiguous()));
    }
    return features;
  });
}

void modelSetTraining(const Model& model, bool training) {
  Model::Impl& impl = get(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  guard([&] {
    impl.module.train(training);
    impl.inference.reset();
    return 0;
  });
}

bool modelIsTraining(const Model& model) {
  Model::Impl& impl = get(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  return impl.module.is_training();
}

void modelFreezeEncoder(const Model& model, bool frozen) {
  Model::Impl& impl = get(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  guard([&] {
    for (const at::Tensor& p : encoderOf(impl).parameters()) p.requires_grad_(!frozen);
    impl.encoderFrozen = frozen;
    return 0;
  });
}

bool modelEncoderFrozen(const Model& model) { return get(model).encoderFrozen; }

void modelSetPrecision(const Model& model, const std::string& precision, const std::string& specJson) {
  Model::Impl& impl = get(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  guard([&] {
    zoo::checkPrecision(precision, impl.device);
    impl.spec.precision = precision;
    impl.spec.json = specJson;
    impl.inference.reset();
    return 0;
  });
}

void modelTo(const Model& model, const std::string& device) {
  Model::Impl& impl = get(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  guard([&] {
    impl.device = parseDevice(device);
    impl.module.to(impl.device);
    applyChannelsLast(impl);
    impl.inference.reset();
    return 0;
  });
}

std::string modelDevice(const Model& model) { return get(model).device.str(); }

ParameterCounts modelParameterCounts(const Model& model) {
  Model::Impl& impl = get(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  return guard([&] {
    ParameterCounts counts;
    for (const at::Tensor& p : impl.module.parameters()) {
      counts.total += p.numel();
      if (p.requires_grad()) counts.trainable += p.numel();
    }
    for (const at::Tensor& p : encoderOf(impl).parameters()) counts.encoder += p.numel();
    counts.decoder = counts.total - counts.encoder;
    return counts;
  });
}

void modelSetInferenceOptimization(const Model& model, bool enabled) {
  Model::Impl& impl = get(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  impl.optimizeInference = enabled;
  impl.inference.reset();
}

GradientReport modelGradientStep(const Model& model, const Tensor& input, double lr, bool statistics) {
  Model::Impl& impl = get(model);
  const at::Tensor& x = unwrap(input);
  return guard([&] {
    std::lock_guard<std::mutex> lock(impl.mutex);
    zoo::checkInput(impl, x);
    impl.inference.reset();
    // Training-mode outputs: the auxiliary heads of bisenet/daunet take part as in training.
    const zoo::TrainForward out = zoo::runTrainForward(impl, impl.module, x);
    at::Tensor loss = out.mask.pow(2).mean();
    if (out.label.defined()) loss = loss + out.label.pow(2).mean();
    for (const at::Tensor& a : out.aux) loss = loss + a.pow(2).mean();
    loss.backward();
    GradientReport report;
    report.loss = loss.item<double>();
    report.finite = std::isfinite(report.loss);
    double squared = 0;
    torch::NoGradGuard noGrad;
    for (const at::Tensor& p : impl.module.parameters()) {
      if (!p.requires_grad()) continue;
      ++report.trainableTensors;
      const at::Tensor& g = p.grad();
      if (!g.defined()) continue;
      ++report.tensorsWithGradient;
      if (statistics) {
        if (g.ne(0).any().item<bool>()) ++report.tensorsWithNonzeroGradient;
        if (!g.isfinite().all().item<bool>()) report.finite = false;
        squared += g.to(at::kDouble).pow(2).sum().item<double>();
      }
      if (lr > 0) p.sub_(g, lr);
      p.mutable_grad().reset();
    }
    report.gradientNorm = std::sqrt(squared);
    return report;
  });
}

}  // namespace pn
