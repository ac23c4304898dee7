// Torch side: the narrow hook that makes TrainEngine's step data-parallel (native/distributed/)
// without the engine knowing c10d. trainEngineStep calls, in order, under its locks:
//   beforeForward(module)            before the train-mode forward
//   trainingModule(module) -> module the module whose forward the step runs (SyncBatchNorm's
//                                    training twin; the model's own module by default)
//   agreeFinite(finite) -> bool      after the loss is computed, before backward: every rank's
//                                    verdict combined, so that all ranks skip backward together
//   beforeBackward(loss, sync)       just before loss.backward(); `sync` on the calls that end in an
//                                    optimizer step (false on calls that only accumulate)
// After backward on a sync call the gradients are final (the hook has all-reduced them), and the
// engine goes on exactly as without a hook: frozen gradients dropped, clip, optimizer step.
// Never include from the N-API layer (native/binding/).
#pragma once

#include <memory>

#include <torch/script.h>

#include "train_api.h"

namespace pn {

class TrainStepHook {
 public:
  virtual ~TrainStepHook() = default;
  virtual void beforeForward(torch::jit::Module& module) {}
  virtual torch::jit::Module& trainingModule(torch::jit::Module& module) { return module; }
  virtual bool agreeFinite(bool finite) { return finite; }
  virtual void beforeBackward(const at::Tensor& loss, bool sync) {}
};

/** Installs (or, with nullptr, removes) the engine's hook; waits for a running step. */
void setTrainStepHook(const TrainEngine& engine, std::shared_ptr<TrainStepHook> hook);
/** The model an engine trains. */
Model trainEngineModel(const TrainEngine& engine);

}  // namespace pn
