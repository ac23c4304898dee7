// The torch side of the training engine shared by engine.cpp (the eager step) and graphs.cpp (the
// same step captured once as a CUDA graph and replayed). Never include from N-API code.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "../models/model_internal.h"
#include "../optim/optim.h"
#include "engine_hooks.h"
#include "train_api.h"

namespace pn {

namespace graphs {
struct EngineGraph;
}

struct TrainEngine::Impl {
  Model model;
  TrainEngineSpec spec;
  Optimizer optimizer;
  /** Calls since the last optimizer step. */
  int64_t pending = 0;
  /** Serialises steps and state calls on this engine (taken before the model's mutex). */
  std::mutex mutex;
  /** Learning rates as JS sees them, applied to the optimizer before the next step. */
  std::mutex lrMutex;
  std::vector<OptimizerGroupInfo> groups;
  bool lrDirty = false;
  /** Gradient scaler (fp16): on or off, the current scale and the finite steps since it last changed. */
  bool scalerOn = false;
  double scale = 1.0;
  int64_t growthTracker = 0;
  /** Data-parallel hook (engine_hooks.h); null for a single process. Guarded by `mutex`. */
  std::shared_ptr<TrainStepHook> hook;
  /** CUDA graph of the whole step (graphs.cpp): its side stream, the captured graph, counters. */
  std::shared_ptr<graphs::EngineGraph> graph;
};

namespace engine {
/** sum(weight * term(logits, target)) over the spec's loss terms. */
at::Tensor segmentationLoss(const TrainEngineSpec& spec, const at::Tensor& logits, const at::Tensor& target);
/** BCE + focal (gamma 2, SPEC 4's focal) on the label logit: the combo loss without its Dice. */
at::Tensor labelBceFocal(const at::Tensor& logits, const at::Tensor& labels);
/** The step's loss from the training forward: segment or classify terms, the label loss, auxiliary heads. */
at::Tensor trainingLoss(const TrainEngineSpec& spec, const zoo::TrainForward& out, const at::Tensor& target, const at::Tensor& labelTarget);
}  // namespace engine

namespace graphs {

/** Every reason the engine's step cannot be captured as a CUDA graph now (empty: it can). */
std::vector<std::string> blockers(const TrainEngine::Impl& engine, const Model::Impl& model);

/** While alive, this thread's CUDA work runs on the engine graph's side stream (null: unchanged). */
using StreamScope = std::shared_ptr<void>;

/**
 * Runs this step through the CUDA graph when it can: replays the captured step, or captures it once
 * the same input shapes have run eagerly kWarmupSteps times in a row. Returns nothing when the
 * step must run eagerly; then `scope` (when set) keeps the eager step on the graph's side stream,
 * so that warm-up and capture see the same stream. Call with the engine and model mutexes held,
 * after the inputs were checked.
 */
std::optional<TrainStepResult> step(TrainEngine::Impl& engine, Model::Impl& model, const at::Tensor& images, const at::Tensor& masks,
                                    const at::Tensor& labels, StreamScope& scope);
/** Drops the captured graph (weights, state or settings changed); the next steps warm up again. */
void invalidate(TrainEngine::Impl& engine, const std::string& why);
/** What status() reports: mode, whether a graph is live, captures, replays and the reason it is not. */
TrainEngineGraphStatus status(const TrainEngine::Impl& engine, const Model::Impl& model);

/** Probabilities of modelPredict: the mask and (with a classification head) the label. */
using Probabilities = std::pair<at::Tensor, at::Tensor>;

/**
 * modelPredict's forward through a per-model CUDA graph: `compute` (eval forward, sigmoid, TTA
 * merge) is captured for an input shape, TTA flag and module once that key was asked for twice,
 * and replayed after; at most kPredictGraphs graphs per model (least recently used dropped).
 * Eager (compute(x)) on CPU, on builds without CUDA graphs, with `allowGraph` false, or after a
 * failed capture. Call with the model mutex held.
 */
Probabilities predict(Model::Impl& model, torch::jit::Module& module, const at::Tensor& x, bool tta, bool allowGraph,
                      const std::function<Probabilities(const at::Tensor&)>& compute);
/** The model's predict graphs: live graphs, captures, replays, eager calls and the last reason. */
ModelGraphStatus predictStatus(const Model::Impl& model);

}  // namespace graphs
}  // namespace pn
