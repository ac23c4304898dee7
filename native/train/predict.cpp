// modelPredict: eval-mode probabilities with optional horizontal-flip TTA as one batched forward.
#include "../models/model_internal.h"
#include "train_api.h"

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

ModelOutput modelPredict(const Model& model, const Tensor& input, bool tta) {
  if (!model.defined()) throw Error("model is undefined (disposed or never created)");
  Model::Impl& impl = *model.impl();
  const at::Tensor& x = unwrap(input);
  return guard([&] {
    std::lock_guard<std::mutex> lock(impl.mutex);
    torch::NoGradGuard noGrad;
    const int64_t batch = x.dim() > 0 ? x.size(0) : 0;
    c10::IValue out;
    {
      // Eval semantics whatever the mode: the frozen inference copy (an eval-mode clone, shared
      // with modelForward and rebuilt after any change), or the module itself switched to eval
      // for the call when inference optimisation is off.
      ModeScope evalMode(impl.module, false);
      zoo::checkInput(impl, x);
      const at::Tensor both = tta ? at::cat({x, x.flip({3})}, 0) : x;
      if (impl.optimizeInference && impl.spec.precision == "fp32") {
        if (!impl.inference) {
          torch::jit::Module copy = impl.module.clone();
          copy.eval();
          impl.inference = torch::jit::optimize_for_inference(copy);
        }
        out = zoo::runForward(impl, *impl.inference, both);
      } else {
        out = zoo::runForward(impl, impl.module, both);
      }
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
    ModelOutput result;
    result.mask = wrap(mask.contiguous());
    if (label.defined()) result.label = wrap(label.contiguous());
    return result;
  });
}

}  // namespace pn
