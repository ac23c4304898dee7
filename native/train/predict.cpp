// modelPredict: eval-mode probabilities with optional horizontal-flip TTA as one batched forward.
#include "engine_internal.h"

namespace pn {

namespace {

/** Sets the module's training flag for the scope and restores it after (also on errors). */
class ModeScope {
 public:
  ModeScope(torch::jit::Module& module, bool training) : module_(module), previous_(module.is_training()) {
    if (previous_ != training) module_.train(training);
  }
  ~ModeScope() {
    if (module_.is_training() != previous_) module_.train(previous_);
  }
  ModeScope(const ModeScope&) = delete;
  ModeScope& operator=(const ModeScope&) = delete;

 private:
  torch::jit::Module& module_;
  bool previous_;
};

}  // namespace

ModelOutput modelPredict(const Model& model, const Tensor& input, bool tta, bool cudaGraph) {
  if (!model.defined()) throw Error("model is undefined (disposed or never created)");
  Model::Impl& impl = *model.impl();
  const at::Tensor& x = unwrap(input);
  return guard([&] {
    std::lock_guard<std::mutex> lock(impl.mutex);
    torch::NoGradGuard noGrad;
    const int64_t batch = x.dim() > 0 ? x.size(0) : 0;
    // Eval semantics whatever the mode: the frozen inference copy (an eval-mode clone, shared
    // with modelForward and rebuilt after any change), or the module itself switched to eval
    // for the call when inference optimisation is off.
    ModeScope evalMode(impl.module, false);
    zoo::checkInput(impl, x);
    torch::jit::Module* module = &impl.module;
    if (impl.optimizeInference && impl.spec.precision == "fp32") {
      if (!impl.inference) {
        torch::jit::Module copy = impl.module.clone();
        copy.eval();
        impl.inference = torch::jit::optimize_for_inference(copy);
      }
      module = &*impl.inference;
    }
    const auto compute = [&](const at::Tensor& in) -> graphs::Probabilities {
      c10::IValue out;
      // Flip TTA as one forward over cat([x, flip(x)]), unless the doubled batch's widest
      // full-resolution activation (up to 256 channels, e.g. AlbuNet's bilinear upsampling) would
      // pass INT_MAX elements, which several CUDA kernels refuse (LibTorch 2.11's
      // upsample_bilinear2d_nhwc at 1024 px, batch 8): then the two halves run one after another.
      const bool split = tta && 2 * batch * 256 * in.size(2) * in.size(3) > static_cast<int64_t>(INT32_MAX);
      if (tta && split) {
        const c10::IValue a = zoo::runForward(impl, *module, in);
        const c10::IValue b = zoo::runForward(impl, *module, in.flip({3}));
        if (a.isTuple()) {
          const auto& ea = a.toTupleRef().elements();
          const auto& eb = b.toTupleRef().elements();
          out = c10::ivalue::Tuple::create(std::vector<c10::IValue>{at::cat({ea[0].toTensor(), eb[0].toTensor()}, 0), at::cat({ea[1].toTensor(), eb[1].toTensor()}, 0)});
        } else {
          out = at::cat({a.toTensor(), b.toTensor()}, 0);
        }
      } else {
        out = zoo::runForward(impl, *module, tta ? at::cat({in, in.flip({3})}, 0) : in);
      }
      at::Tensor mask;
      at::Tensor label;
      if (out.isTuple()) {
        const auto& elements = out.toTupleRef().elements();
        mask = elements[0].toTensor();
        label = elements[1].toTensor();
      } else {
        mask = out.toTensor();
      }
      mask = at::sigmoid(mask.to(at::kFloat));
      if (label.defined()) label = at::sigmoid(label.to(at::kFloat));
      if (tta) {
        mask = (mask.narrow(0, 0, batch) + mask.narrow(0, batch, batch).flip({3})) / 2;
        if (label.defined()) label = (label.narrow(0, 0, batch) + label.narrow(0, batch, batch)) / 2;
      }
      return {mask.contiguous(), label.defined() ? label.contiguous() : label};
    };
    const auto [mask, label] = graphs::predict(impl, *module, x, tta, cudaGraph, compute);
    ModelOutput result;
    result.mask = wrap(mask);
    if (label.defined()) result.label = wrap(label);
    return result;
  });
}

ModelGraphStatus modelGraphStatus(const Model& model) {
  if (!model.defined()) throw Error("model is undefined (disposed or never created)");
  Model::Impl& impl = *model.impl();
  std::lock_guard<std::mutex> lock(impl.mutex);
  return graphs::predictStatus(impl);
}

}  // namespace pn
