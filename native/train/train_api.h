// The torch-free API of pneumo-native's training engine, for native/binding/ (napi.h + torch-free
// headers only): the native training step (forward + loss + backward + clip + optimizer step in one
// call), eval-mode prediction with flip TTA as one batched forward, and the SWA helpers (weighted
// state-dict averaging, BatchNorm statistics recomputed over data). Every function succeeds or
// throws pn::Error. The torch side is native/train/*.cpp over the model's TorchScript module
// (models/model_internal.h), the fused losses (losses/losses.h) and pn::optim (optim/optim.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"
#include "../losses/loss_api.h"
#include "../models/model_api.h"
#include "../optim/optim_api.h"

namespace pn {

// ---- prediction -------------------------------------------------------------------------------

/**
 * Eval-mode prediction without autograd: sigmoid probabilities of the mask [B, classes, H, W] and,
 * with a classification head, of the label logit [B, 1]. Runs the frozen, conv-BN-folded inference
 * module that modelForward uses in eval mode, whatever the model's mode (which is left as it was).
 * With `tta`, horizontal-flip TTA as one forward over cat([x, flip(x)]): (a + flip(b)) / 2 for the
 * mask, the mean of the two label probabilities.
 */
ModelOutput modelPredict(const Model& model, const Tensor& input, bool tta, bool cudaGraph = true);

/** A model's predict CUDA graphs (modelPredict with cudaGraph). */
struct ModelGraphStatus {
  /** Graphs held now (one per input shape and TTA flag, at most 2). */
  int64_t graphs = 0;
  int64_t captures = 0;
  int64_t replays = 0;
  int64_t eagerCalls = 0;
  /** Why the last call ran eagerly ("" when it replayed a graph). */
  std::string reason;
};
ModelGraphStatus modelGraphStatus(const Model& model);

// ---- training engine --------------------------------------------------------------------------

/** One term of the segmentation loss: weight * kind(mask logits, masks). */
struct LossTermSpec {
  LossKind kind = LossKind::Combo;
  double weight = 1.0;
  LossOptions options;
};

/**
 * Dynamic loss scaling (torch.cuda.amp.GradScaler's rule): the loss is multiplied by `scale`
 * before backward and the gradients divided by it before clipping; a step whose gradients are not
 * finite is skipped and the scale multiplied by backoffFactor; after growthInterval finite steps in
 * a row the scale is multiplied by growthFactor.
 */
struct GradScalerSpec {
  /** "auto" (on exactly when the model's precision is fp16), "on" or "off" (refused with fp16). */
  std::string mode = "auto";
  double initScale = 65536.0;
  double growthFactor = 2.0;
  double backoffFactor = 0.5;
  int64_t growthInterval = 2000;
};

struct TrainEngineSpec {
  OptimizerSpec optimizer;
  /** Summed: sum(weight * term(logits, masks)). Ignored by the classify task. */
  std::vector<LossTermSpec> loss;
  /** Optimizer step every N calls; each call's loss is divided by N before backward. */
  int64_t accumulation = 1;
  /** Global-norm clip before each optimizer step (0: off). */
  double gradClip = 0;
  /**
   * false (segment): the loss terms on the mask logits, plus labelWeight * BCE on the label logit
   * when labelWeight > 0. true (classify, SPEC 5): labelWeight * (BCE + focal) on the label logit
   * plus maskWeight * BCE on the mask logits.
   */
  bool classify = false;
  double labelWeight = 0;
  double maskWeight = 1;
  /**
   * Models with auxiliary heads (bisenet, daunet): each auxiliary mask output adds auxWeight x
   * the mask loss (segment: the loss terms; classify: maskWeight x BCE). The 42nd place's 0.4.
   */
  double auxWeight = 0.4;
  GradScalerSpec scaler;
  /**
   * Whole-step CUDA graphs: "auto" (default: capture when the model is on CUDA and the step can be
   * captured, else run eagerly and say why in trainEngineGraphStatus), "on" (the same, but a step
   * that cannot be captured is an error naming the reason) or "off".
   */
  std::string cudaGraphs = "auto";
};

/** Where an engine's CUDA graph stands. */
struct TrainEngineGraphStatus {
  std::string mode;
  /** A captured graph is live (the next step at its shapes replays it). */
  bool active = false;
  int64_t captures = 0;
  int64_t replays = 0;
  int64_t eagerSteps = 0;
  /** Why the last step ran eagerly ("" when it replayed the graph). */
  std::string reason;
};

struct TrainStepResult {
  /** This call's loss (before the division by `accumulation`). */
  double loss = 0;
  /** Global gradient norm before clipping; NaN when the optimizer did not step. */
  double gradNorm = 0;
  bool finite = true;
  bool stepped = false;
  /** The loss scale after this call (0 when the scaler is off). */
  double lossScale = 0;
  /** The scaler found non-finite gradients: the step was skipped and the scale backed off. */
  bool overflow = false;
  /** This call replayed the engine's CUDA graph (captured or replayed) instead of running eagerly. */
  bool graphed = false;
};

/** A model + an optimizer over its parameters + the loss; copies share it. */
class TrainEngine {
 public:
  struct Impl;
  TrainEngine();
  explicit TrainEngine(std::shared_ptr<Impl> impl);
  bool defined() const { return impl_ != nullptr; }
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

TrainEngine createTrainEngine(const Model& model, const TrainEngineSpec& spec);
/**
 * One training call in train mode: forward, loss, backward (accumulated), and every
 * `accumulation` calls: frozen parameters' gradients dropped, clip, optimizer step, zero grad.
 * A non-finite loss (or gradient norm) skips backward and step, zeroes the accumulated gradients
 * and returns finite = false. `labels` ([B] or [B, 1]) may be undefined for the segment task.
 */
TrainStepResult trainEngineStep(const TrainEngine& engine, const Tensor& images, const Tensor& masks, const Tensor& labels);
/** The parameter groups with their current learning rates (never waits for a running step). */
std::vector<OptimizerGroupInfo> trainEngineGroups(const TrainEngine& engine);
/** Sets a group's learning rate (applied before the next step; never waits for a running step). */
void trainEngineSetLr(const TrainEngine& engine, int64_t group, double lr);
/** Sets every group's learning rate to its initial one times `factor`. */
void trainEngineScaleLr(const TrainEngine& engine, double factor);
/**
 * The optimizer state ("optimizer/..." names, as Optimizer::stateDict) plus, with the gradient
 * scaler on, "scaler/scale" (float64) and "scaler/growth_tracker" (int64).
 */
std::vector<std::pair<std::string, Tensor>> trainEngineOptimizerState(const TrainEngine& engine);
void trainEngineLoadOptimizerState(const TrainEngine& engine, const std::vector<std::pair<std::string, Tensor>>& state);
/** Calls since the last optimizer step (0 .. accumulation - 1). */
int64_t trainEnginePending(const TrainEngine& engine);
/** The engine's CUDA graph: mode, whether one is live, counters, and why the last step ran eagerly. */
TrainEngineGraphStatus trainEngineGraphStatus(const TrainEngine& engine);

// ---- SWA --------------------------------------------------------------------------------------

/**
 * The weighted average of state dicts with the same names and shapes: floating tensors are
 * sum(w_k t_k) with the weights normalised to sum 1 (accumulated in float64, returned in each
 * tensor's dtype); integer and bool tensors (num_batches_tracked) are copied from the first.
 * Empty weights: equal weights.
 */
std::vector<std::pair<std::string, Tensor>> averageStateDicts(const std::vector<std::vector<std::pair<std::string, Tensor>>>& dicts,
                                                              const std::vector<double>& weights);

/**
 * BatchNorm statistics recomputed over batches (torch.optim.swa_utils.update_bn): every BatchNorm's
 * running mean and variance become the plain average over the batches of the batch mean and
 * unbiased batch variance (PyTorch's momentum=None), num_batches_tracked the batch count.
 * begin -> add (per batch, train mode, no autograd) -> finish (eval mode) or abort (restores the
 * statistics and the mode).
 */
class BatchNormRecompute {
 public:
  struct Impl;
  BatchNormRecompute();
  explicit BatchNormRecompute(std::shared_ptr<Impl> impl);
  bool defined() const { return impl_ != nullptr; }
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

BatchNormRecompute beginBatchNormRecompute(const Model& model);
/** Runs one batch; returns the number of batches seen so far. */
int64_t batchNormRecomputeAdd(const BatchNormRecompute& session, const Tensor& batch);
/** Writes the averages, puts the model in eval mode; returns the number of BatchNorm layers updated. */
int64_t finishBatchNormRecompute(const BatchNormRecompute& session);
void abortBatchNormRecompute(const BatchNormRecompute& session);

}  // namespace pn
