// Whole-step CUDA graphs for the training engine. Training at a fixed size and batch has static
// shapes, so the step (forward, loss, backward, unscale, global-norm clip, fused optimizer update)
// is captured once after a few eager warm-up steps and replayed: one graph launch instead of
// thousands of kernel launches, the pace the GPU sets rather than the CPU.
//
// What the graph reads from device memory, so that replays stay right as training moves on:
//   - the batch: static input buffers the engine owns; every step copies its batch in;
//   - per group, the learning rate, and per parameter, the optimizer step count, and the loss
//     scale and its inverse: a small scalar buffer written from the host before every replay;
//   - every parameter, BatchNorm buffer and optimizer state tensor, at the addresses it had at
//     capture: a replay first checks those addresses (and which parameters are trainable), and a
//     change drops the graph and warms up again, never replays stale pointers.
// Non-finite losses and gradients cannot branch inside a graph: the fused optimizer kernels take a
// "found_inf" flag and skip the update on the device; the host reads the loss, the gradient norm
// and the two flags after the replay and does what the eager step does (BatchNorm statistics put
// back, the gradient scaler backed off or grown).
//
// Blockers (reported by status, an error with cudaGraphs "on"): a CPU model, a CPU or pre-2.4
// LibTorch, gradient accumulation, a data-parallel hook (c10d's all-reduce), RAdam (no fused kernel).
#include <cmath>
#include <limits>
#include <map>
#include <sstream>
#include <unordered_map>

#include "../core/torch_compat.h"
#include "engine_internal.h"

#if PN_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace pn::graphs {

/** Eager steps at the same input shapes before the step is captured (cuDNN autotuning, lazy state). */
constexpr int64_t kWarmupSteps = 3;

namespace {

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : "; ") + p;
  return out;
}

optim::Algorithm algorithmOf(const TrainEngine::Impl& e) { return torchSide(e.optimizer).options().kind; }

}  // namespace

#if PN_CUDA_GRAPHS
/** One captured step and everything it reads and writes at fixed addresses. */
struct Captured {
  at::cuda::CUDAGraph graph;
  std::vector<int64_t> key;
  at::Tensor x, y, labels;
  /** [scale, 1 / scale, lr per group..., step per graphed parameter...] (float32). */
  at::Tensor scalarsHost, scalarsDevice;
  /** [loss, gradient norm, loss finite, gradients finite] written by the graph. */
  at::Tensor out, outHost;
  std::vector<at::Tensor> buffers, saved;
  /** The parameters the optimizer updates in the graph, and their LibTorch state. */
  std::vector<at::Tensor> params;
  std::vector<torch::optim::OptimizerParamState*> states;
  size_t groups = 0;
  /** Addresses checked before every replay: every parameter and buffer, every state tensor. */
  std::vector<const void*> addresses;
  std::vector<bool> trainable;
  std::string precision;
};
#endif

struct EngineGraph {
  int64_t captures = 0;
  int64_t replays = 0;
  int64_t eagerSteps = 0;
  std::string reason;
  /** A capture that failed: the engine stays eager (auto) and says why. */
  std::string failure;
  std::vector<int64_t> lastKey;
  int64_t sameKeySteps = 0;
#if PN_CUDA_GRAPHS
  std::optional<c10::cuda::CUDAStream> stream;
  std::unique_ptr<Captured> captured;
#endif
};

/** Graphs kept per model for predict (each holds its activations' memory). */
constexpr size_t kPredictGraphs = 2;

#if PN_CUDA_GRAPHS
struct PredictEntry {
  std::string key;
  at::cuda::CUDAGraph graph;
  /** The module the graph ran (kept alive: a frozen copy's folded weights live in it). */
  torch::jit::Module module;
  at::Tensor x;
  Probabilities out;
  std::vector<const void*> addresses;
  uint64_t lastUse = 0;
};
#endif

struct PredictGraphs {
  int64_t captures = 0;
  int64_t replays = 0;
  int64_t eagerCalls = 0;
  std::string reason;
  std::string failure;
  uint64_t clock = 0;
  /** How often each key was asked for (a key is captured on its second call). */
  std::map<std::string, int64_t> seen;
#if PN_CUDA_GRAPHS
  std::optional<c10::cuda::CUDAStream> stream;
  std::vector<std::unique_ptr<PredictEntry>> entries;
#endif
};

ModelGraphStatus predictStatus(const Model::Impl& m) {
  ModelGraphStatus s;
  if (!m.predictGraphs) {
    s.reason = "no predict call yet";
    return s;
  }
  const PredictGraphs& p = *m.predictGraphs;
#if PN_CUDA_GRAPHS
  s.graphs = static_cast<int64_t>(p.entries.size());
#endif
  s.captures = p.captures;
  s.replays = p.replays;
  s.eagerCalls = p.eagerCalls;
  s.reason = p.reason;
  return s;
}

std::vector<std::string> blockers(const TrainEngine::Impl& e, const Model::Impl& m) {
  std::vector<std::string> out;
  if (e.spec.cudaGraphs == "off") {
    out.push_back("cudaGraphs is off");
    return out;
  }
#if !PN_CUDA_GRAPHS
  out.push_back("this build has no CUDA graphs (they need LibTorch 2.4 or newer with CUDA and pneumo-native's CUDA build; LibTorch here is " +
                compat::torchVersion() + ")");
#endif
  if (!m.device.is_cuda()) out.push_back("the model is on " + m.device.str() + ", not a CUDA device");
  if (e.spec.accumulation > 1) {
    out.push_back("gradient accumulation (" + std::to_string(e.spec.accumulation) + " calls per optimizer step) runs eagerly");
  }
  if (e.hook) out.push_back("data-parallel training runs eagerly (c10d's bucketed all-reduce is not captured)");
  if (algorithmOf(e) == optim::Algorithm::RAdam) out.push_back("the radam optimizer has no fused CUDA kernel (adam, adamw and sgd have)");
  return out;
}

TrainEngineGraphStatus status(const TrainEngine::Impl& e, const Model::Impl& m) {
  TrainEngineGraphStatus s;
  s.mode = e.spec.cudaGraphs;
  const std::vector<std::string> reasons = blockers(e, m);
  if (e.graph) {
    s.captures = e.graph->captures;
    s.replays = e.graph->replays;
    s.eagerSteps = e.graph->eagerSteps;
    s.reason = e.graph->reason;
#if PN_CUDA_GRAPHS
    s.active = e.graph->captured != nullptr;
#endif
  }
  if (!reasons.empty()) s.reason = join(reasons);
  else if (!e.graph) s.reason = "no step yet";
  return s;
}

void invalidate(TrainEngine::Impl& e, const std::string& why) {
  if (!e.graph) return;
#if PN_CUDA_GRAPHS
  if (e.graph->captured) {
    e.graph->captured.reset();
    e.graph->reason = "graph dropped: " + why;
  }
#endif
  e.graph->sameKeySteps = 0;
  e.graph->lastKey.clear();
}

#if !PN_CUDA_GRAPHS

std::optional<TrainStepResult> step(TrainEngine::Impl& e, Model::Impl& m, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                    StreamScope&) {
  if (!e.graph) e.graph = std::make_shared<EngineGraph>();
  const std::vector<std::string> reasons = blockers(e, m);
  if (e.spec.cudaGraphs == "on" && !reasons.empty()) {
    throw Error("cudaGraphs is 'on' but this step cannot be captured: " + join(reasons));
  }
  ++e.graph->eagerSteps;
  e.graph->reason = join(reasons);
  return std::nullopt;
}

Probabilities predict(Model::Impl& m, torch::jit::Module&, const at::Tensor& x, bool, bool allowGraph,
                      const std::function<Probabilities(const at::Tensor&)>& compute) {
  if (!m.predictGraphs) m.predictGraphs = std::make_shared<PredictGraphs>();
  ++m.predictGraphs->eagerCalls;
  m.predictGraphs->reason = !allowGraph ? "cudaGraph is off for this call"
                            : !m.device.is_cuda() ? "the model is on " + m.device.str() + ", not a CUDA device"
                                                  : "this build has no CUDA graphs (LibTorch " + compat::torchVersion() + ")";
  return compute(x);
}

#else

namespace {

/** Not a failure: the step cannot be captured yet (it warms up eagerly one more step). */
struct Postpone : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/** Makes `waiter` wait for the work queued so far on `signaller` (a CUDA event, no host sync). */
void order(const c10::cuda::CUDAStream& signaller, const c10::cuda::CUDAStream& waiter) {
  cudaEvent_t event = nullptr;
  C10_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  const cudaError_t recorded = cudaEventRecord(event, signaller.stream());
  const cudaError_t waited = recorded == cudaSuccess ? cudaStreamWaitEvent(waiter.stream(), event, 0) : recorded;
  cudaEventDestroy(event);  // released once the wait is satisfied
  C10_CUDA_CHECK(waited);
}

/** Puts `side` in place of the current stream of its device until the returned scope is released. */
StreamScope enterStream(const c10::cuda::CUDAStream& side) {
  const c10::cuda::CUDAStream previous = c10::cuda::getCurrentCUDAStream(side.device_index());
  if (previous == side) return nullptr;
  order(previous, side);
  c10::cuda::setCurrentCUDAStream(side);
  struct Restore {
    c10::cuda::CUDAStream previous;
    c10::cuda::CUDAStream side;
    ~Restore() {
      try {
        order(side, previous);
      } catch (...) {
        // Restoring the stream below matters more than ordering an already failed step.
      }
      c10::cuda::setCurrentCUDAStream(previous);
    }
  };
  return std::make_shared<Restore>(Restore{previous, side});
}

std::string shapeText(const std::vector<int64_t>& key) {
  std::ostringstream out;
  out << "[";
  for (size_t k = 0; k < key.size(); ++k) out << (k ? ", " : "") << key[k];
  out << "]";
  return out.str();
}

std::vector<int64_t> keyOf(const at::Tensor& x, const at::Tensor& y, const at::Tensor& labels) {
  std::vector<int64_t> key(x.sizes().begin(), x.sizes().end());
  key.insert(key.end(), y.sizes().begin(), y.sizes().end());
  key.push_back(labels.defined() ? labels.numel() : -1);
  return key;
}

/** The LibTorch per-parameter state's tensors (addresses the graph bakes in) and its step. */
struct StateView {
  at::Tensor expAvg, expAvgSq, maxExpAvgSq, momentum;
  int64_t* step = nullptr;
};

StateView viewState(torch::optim::OptimizerParamState& state) {
  StateView v;
  if (auto* s = dynamic_cast<torch::optim::AdamParamState*>(&state)) {
    v.expAvg = s->exp_avg();
    v.expAvgSq = s->exp_avg_sq();
    v.maxExpAvgSq = s->max_exp_avg_sq();
    v.step = &s->step();
  } else if (auto* s = dynamic_cast<torch::optim::AdamWParamState*>(&state)) {
    v.expAvg = s->exp_avg();
    v.expAvgSq = s->exp_avg_sq();
    v.maxExpAvgSq = s->max_exp_avg_sq();
    v.step = &s->step();
  } else if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(&state)) {
    v.momentum = s->momentum_buffer();
  }
  return v;
}

using StateMap = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;

torch::optim::OptimizerParamState* findState(torch::optim::Optimizer& optimizer, const at::Tensor& p) {
  auto& state = optimizer.state();
  const auto it = state.find(compat::optimizerStateKey<StateMap>(p));
  return it == state.end() ? nullptr : it->second.get();
}

void pushAddresses(std::vector<const void*>& out, const StateView& v) {
  for (const at::Tensor* t : {&v.expAvg, &v.expAvgSq, &v.maxExpAvgSq, &v.momentum}) {
    if (t->defined()) out.push_back(t->data_ptr());
  }
}

/** Why the captured graph can no longer serve (empty: it can). */
std::string staleness(const Captured& c, const TrainEngine::Impl& e, Model::Impl& m) {
  if (m.spec.precision != c.precision) return "the model's precision changed from " + c.precision + " to " + m.spec.precision;
  std::vector<const void*> now;
  std::vector<bool> trainable;
  for (const at::Tensor& p : m.module.parameters()) {
    now.push_back(p.data_ptr());
    trainable.push_back(p.requires_grad());
  }
  for (const at::Tensor& b : m.module.buffers()) now.push_back(b.data_ptr());
  if (trainable != c.trainable) return "the set of trainable parameters changed (an encoder was frozen or unfrozen)";
  torch::optim::Optimizer& optimizer = torchSide(e.optimizer).torchOptimizer();
  for (size_t k = 0; k < c.params.size(); ++k) {
    torch::optim::OptimizerParamState* state = findState(optimizer, c.params[k]);
    if (state != c.states[k]) return "the optimizer state was replaced";
    if (state != nullptr) pushAddresses(now, viewState(*state));
  }
  if (now != c.addresses) return "weights, buffers or optimizer state moved to new memory (loaded, converted or moved)";
  return "";
}

void fillScalars(Captured& c, const TrainEngine::Impl& e) {
  float* s = c.scalarsHost.data_ptr<float>();
  const double scale = e.scalerOn ? e.scale : 1.0;
  s[0] = static_cast<float>(scale);
  s[1] = static_cast<float>(1.0 / scale);
  torch::optim::Optimizer& optimizer = torchSide(e.optimizer).torchOptimizer();
  for (size_t g = 0; g < c.groups; ++g) s[2 + g] = static_cast<float>(optimizer.param_groups()[g].options().get_lr());
  for (size_t k = 0; k < c.states.size(); ++k) {
    const StateView v = viewState(*c.states[k]);
    s[2 + c.groups + k] = v.step ? static_cast<float>(*v.step + 1) : 0.0f;
  }
}

void copyInputs(Captured& c, const at::Tensor& x, const at::Tensor& y, const at::Tensor& labels) {
  c.x.copy_(x, /*non_blocking=*/true);
  c.y.copy_(y, /*non_blocking=*/true);
  if (c.labels.defined()) c.labels.copy_(labels.reshape({labels.numel(), 1}), /*non_blocking=*/true);
}

/** Ends a capture that an error interrupted, so that the stream and the allocator are usable again. */
void abandonCapture(at::cuda::CUDAGraph& graph, const c10::cuda::CUDAStream& stream, c10::DeviceIndex device) {
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream.stream(), &capturing) == cudaSuccess && capturing != cudaStreamCaptureStatusNone) {
    cudaGraph_t partial = nullptr;
    cudaStreamEndCapture(stream.stream(), &partial);
    if (partial != nullptr) cudaGraphDestroy(partial);
  }
  try {
    c10::cuda::CUDACachingAllocator::endAllocateToPool(device, graph.pool());
  } catch (...) {
    // Already ended by capture_end.
  }
  (void)cudaGetLastError();  // a capture error is not sticky; clear it for the eager step that follows
}

/**
 * Captures the step on `stream` (the current stream). Nothing runs during capture: the caller
 * replays the graph afterwards for this step's update.
 */
std::unique_ptr<Captured> capture(TrainEngine::Impl& e, Model::Impl& m, const at::Tensor& x, const at::Tensor& y, const at::Tensor& labels,
                                  std::vector<int64_t> key, const c10::cuda::CUDAStream& stream) {
  auto c = std::make_unique<Captured>();
  c->key = std::move(key);
  c->precision = m.spec.precision;
  const auto floats = at::TensorOptions().dtype(at::kFloat).device(m.device);
  const bool channelsLast = m.spec.channelsLast && x.dim() == 4;
  c->x = at::empty(x.sizes(), floats, channelsLast ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  c->y = at::empty(y.sizes(), floats);
  if (labels.defined()) c->labels = at::empty({labels.numel(), 1}, floats);
  copyInputs(*c, x, y, labels);

  optim::Optimizer& ours = torchSide(e.optimizer);
  torch::optim::Optimizer& optimizer = ours.torchOptimizer();
  const optim::Algorithm algorithm = ours.options().kind;
  c->groups = optimizer.param_groups().size();
  std::unordered_map<const void*, size_t> groupOf;
  for (size_t g = 0; g < c->groups; ++g) {
    for (const at::Tensor& p : optimizer.param_groups()[g].params()) groupOf[p.unsafeGetTensorImpl()] = g;
  }
  for (const at::Tensor& p : m.module.parameters()) {
    c->trainable.push_back(p.requires_grad());
    if (p.grad().defined()) p.mutable_grad().reset();  // grads are allocated (and owned) by the graph
  }
  for (const at::Tensor& b : m.module.buffers()) {
    c->buffers.push_back(b);
    c->saved.push_back(at::empty_like(b));
  }
  // Every trainable parameter is a candidate; those that get no gradient in the captured backward
  // (a label head without a label loss) are left out, as the eager optimizer skips them. State the
  // eager steps have not created yet (every warm-up step skipped by the scaler) is created here as
  // LibTorch would at its first step (zeros, step 0), and removed again for the left-out ones.
  std::vector<at::Tensor> candidates;
  std::vector<at::Tensor> created;
  const optim::OptimizerOptions& o = ours.options();
  for (const at::Tensor& p : m.module.parameters()) {
    if (!p.requires_grad()) continue;
    if (groupOf.find(p.unsafeGetTensorImpl()) == groupOf.end()) throw Error("a trainable parameter is in no optimizer group");
    candidates.push_back(p);
    if (findState(optimizer, p) != nullptr) continue;
    torch::NoGradGuard noGrad;
    const auto zeros = [&] { return at::zeros_like(p, at::MemoryFormat::Preserve); };
    std::unique_ptr<torch::optim::OptimizerParamState> fresh;
    if (algorithm == optim::Algorithm::Adam) {
      auto a = std::make_unique<torch::optim::AdamParamState>();
      a->exp_avg(zeros());
      a->exp_avg_sq(zeros());
      if (o.amsgrad) a->max_exp_avg_sq(zeros());
      fresh = std::move(a);
    } else if (algorithm == optim::Algorithm::AdamW) {
      auto w = std::make_unique<torch::optim::AdamWParamState>();
      w->exp_avg(zeros());
      w->exp_avg_sq(zeros());
      if (o.amsgrad) w->max_exp_avg_sq(zeros());
      fresh = std::move(w);
    } else if (algorithm == optim::Algorithm::SGD && o.momentum > 0) {
      // LibTorch starts the buffer as the first gradient; zeros give the same only without dampening.
      if (o.dampening != 0) throw Postpone("SGD with dampening: waiting for the first optimizer step to create the momentum buffers");
      auto sgd = std::make_unique<torch::optim::SGDParamState>();
      sgd->momentum_buffer(zeros());
      fresh = std::move(sgd);
    } else {
      continue;  // SGD without momentum keeps no state
    }
    optimizer.state()[compat::optimizerStateKey<StateMap>(p)] = std::move(fresh);
    created.push_back(p);
  }
  const auto dropCreated = [&](const std::vector<at::Tensor>& keep) {
    for (const at::Tensor& p : created) {
      bool kept = false;
      for (const at::Tensor& k : keep) kept = kept || k.is_same(p);
      if (!kept) optimizer.state().erase(compat::optimizerStateKey<StateMap>(p));
    }
  };

  const int64_t scalarCount = 2 + static_cast<int64_t>(c->groups) + static_cast<int64_t>(candidates.size());
  c->scalarsHost = at::empty({scalarCount}, at::TensorOptions().dtype(at::kFloat).pinned_memory(true));
  c->scalarsDevice = at::zeros({scalarCount}, floats);
  c->outHost = at::empty({4}, at::TensorOptions().dtype(at::kFloat).pinned_memory(true));

  const bool autocastCache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);  // a cached cast from before the capture would be replayed stale
  try {
    c->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    {
      torch::AutoGradMode gradMode(true);
      at::_foreach_copy_(c->saved, c->buffers);
      const zoo::TrainForward out = zoo::runTrainForward(m, m.module, c->x);
      const at::Tensor loss = engine::trainingLoss(e.spec, out, c->y, c->labels);
      const at::Tensor lossFinite = at::isfinite(loss.detach());
      (e.scalerOn ? loss * c->scalarsDevice[0] : loss).backward();

      torch::NoGradGuard noGrad;
      std::vector<at::Tensor> grads;
      for (const at::Tensor& p : candidates) {
        if (!p.grad().defined()) continue;  // unused by this loss (a label head without a label loss)
        c->params.push_back(p);
        grads.push_back(p.grad().detach());
      }
      if (grads.empty()) throw Error("no parameter received a gradient");
      if (e.scalerOn) at::_foreach_mul_(grads, c->scalarsDevice[1]);
      const at::Tensor total = at::stack(at::_foreach_norm(grads, 2)).norm(2);
      const at::Tensor gradFinite = at::isfinite(total);
      if (e.spec.gradClip > 0) at::_foreach_mul_(grads, (e.spec.gradClip / (total + 1e-6)).clamp_max(1.0));
      const at::Tensor skip = at::logical_not(at::logical_and(lossFinite, gradFinite)).to(at::kFloat);

      // One fused multi-tensor update per group, reading its lr and the step counts from the device.
      std::vector<std::vector<size_t>> members(c->groups);
      for (size_t k = 0; k < c->params.size(); ++k) members[groupOf.at(c->params[k].unsafeGetTensorImpl())].push_back(k);
      for (size_t k = 0; k < c->params.size(); ++k) {
        torch::optim::OptimizerParamState* state = findState(optimizer, c->params[k]);
        if (state == nullptr) {
          // SGD without momentum keeps no state: nothing to check or count.
          c->states.push_back(nullptr);
          continue;
        }
        c->states.push_back(state);
      }
      for (size_t g = 0; g < c->groups; ++g) {
        if (members[g].empty()) continue;
        std::vector<at::Tensor> ps, gs, m1, m2, mx, steps, momenta;
        for (size_t k : members[g]) {
          ps.push_back(c->params[k]);
          gs.push_back(grads[k]);
          if (c->states[k] == nullptr) continue;
          const StateView v = viewState(*c->states[k]);
          if (v.expAvg.defined()) {
            m1.push_back(v.expAvg);
            m2.push_back(v.expAvgSq);
            if (o.amsgrad) {
              if (!v.maxExpAvgSq.defined()) throw Error("amsgrad state is missing");
              mx.push_back(v.maxExpAvgSq);
            }
            steps.push_back(c->scalarsDevice[2 + static_cast<int64_t>(c->groups) + static_cast<int64_t>(k)]);
          }
          if (v.momentum.defined()) momenta.push_back(v.momentum);
        }
        const at::Tensor lr = c->scalarsDevice[2 + static_cast<int64_t>(g)];
        const double decay = ours.group(g).weightDecay;
        switch (algorithm) {
          case optim::Algorithm::Adam:
          case optim::Algorithm::AdamW:
            if (m1.size() != ps.size()) throw Error("Adam state is missing for some parameters (they had no gradient while warming up)");
            if (algorithm == optim::Algorithm::Adam) {
              at::_fused_adam_(ps, gs, m1, m2, mx, steps, lr, o.beta1, o.beta2, decay, o.eps, o.amsgrad, false, std::nullopt, skip);
            } else {
              at::_fused_adamw_(ps, gs, m1, m2, mx, steps, lr, o.beta1, o.beta2, decay, o.eps, o.amsgrad, false, std::nullopt, skip);
            }
            break;
          case optim::Algorithm::SGD:
            if (o.momentum > 0 && momenta.size() != ps.size()) throw Error("SGD momentum buffers are missing (they appear after the first step)");
            at::_fused_sgd_(ps, gs, momenta, decay, o.momentum, lr, o.dampening, o.nesterov, false, /*is_first_step=*/false, std::nullopt, skip);
            break;
          case optim::Algorithm::RAdam: throw Error("radam has no fused kernel");
        }
      }
      c->out = at::stack({loss.detach().to(at::kFloat), total.to(at::kFloat), lossFinite.to(at::kFloat), gradFinite.to(at::kFloat)});
    }
    c->graph.capture_end();
  } catch (...) {
    at::autocast::set_autocast_cache_enabled(autocastCache);
    abandonCapture(c->graph, stream, m.device.index());
    dropCreated({});
    for (const at::Tensor& p : m.module.parameters()) {
      if (p.grad().defined()) p.mutable_grad().reset();
    }
    throw;
  }
  at::autocast::set_autocast_cache_enabled(autocastCache);
  dropCreated(c->params);
  for (const at::Tensor& p : m.module.parameters()) c->addresses.push_back(p.data_ptr());
  for (const at::Tensor& b : c->buffers) c->addresses.push_back(b.data_ptr());
  for (size_t k = 0; k < c->params.size(); ++k) {
    if (c->states[k] != nullptr) pushAddresses(c->addresses, viewState(*c->states[k]));
  }
  return c;
}

/** Replays the captured step with this batch and applies the eager step's rules to its outcome. */
TrainStepResult replay(TrainEngine::Impl& e, Model::Impl& m, Captured& c, const at::Tensor& x, const at::Tensor& y, const at::Tensor& labels,
                       const c10::cuda::CUDAStream& stream, bool inputsCopied) {
  if (!inputsCopied) copyInputs(c, x, y, labels);
  fillScalars(c, e);
  c.scalarsDevice.copy_(c.scalarsHost, /*non_blocking=*/true);
  c.graph.replay();
  c.outHost.copy_(c.out, /*non_blocking=*/true);
  stream.synchronize();
  const float* out = c.outHost.data_ptr<float>();
  TrainStepResult result;
  result.graphed = true;
  result.loss = out[0];
  result.gradNorm = std::numeric_limits<double>::quiet_NaN();
  result.lossScale = e.scalerOn ? e.scale : 0;
  if (out[2] == 0.0f) {
    // A non-finite loss: the device skipped the update; put the BatchNorm statistics back.
    torch::NoGradGuard noGrad;
    at::_foreach_copy_(c.buffers, c.saved);
    result.finite = false;
    return result;
  }
  result.gradNorm = out[1];
  if (out[3] == 0.0f) {
    if (e.scalerOn) {
      e.scale *= e.spec.scaler.backoffFactor;
      e.growthTracker = 0;
      result.overflow = true;
      result.lossScale = e.scale;
      return result;
    }
    result.finite = false;
    return result;
  }
  for (torch::optim::OptimizerParamState* state : c.states) {
    if (state == nullptr) continue;
    const StateView v = viewState(*state);
    if (v.step != nullptr) ++*v.step;
  }
  result.stepped = true;
  if (e.scalerOn && ++e.growthTracker >= e.spec.scaler.growthInterval) {
    e.scale *= e.spec.scaler.growthFactor;
    e.growthTracker = 0;
    result.lossScale = e.scale;
  }
  return result;
}

}  // namespace

std::optional<TrainStepResult> step(TrainEngine::Impl& e, Model::Impl& m, const at::Tensor& x, const at::Tensor& y, const at::Tensor& labels,
                                    StreamScope& scope) {
  if (!e.graph) e.graph = std::make_shared<EngineGraph>();
  EngineGraph& g = *e.graph;
  const std::vector<std::string> reasons = blockers(e, m);
  if (!reasons.empty()) {
    if (e.spec.cudaGraphs == "on") throw Error("cudaGraphs is 'on' but this step cannot be captured: " + join(reasons));
    g.captured.reset();
    ++g.eagerSteps;
    g.reason = join(reasons);
    return std::nullopt;
  }
  if (!g.failure.empty()) {
    ++g.eagerSteps;
    g.reason = g.failure;
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard deviceGuard(m.device.index());
  if (!g.stream) g.stream = c10::cuda::getStreamFromPool(false, m.device.index());
  scope = enterStream(*g.stream);
  std::vector<int64_t> key = keyOf(x, y, labels);

  std::string dropped;
  if (g.captured && g.captured->key == key) {
    const std::string stale = staleness(*g.captured, e, m);
    if (stale.empty()) {
      m.inference.reset();  // the weights change
      ++g.replays;
      g.reason.clear();
      g.sameKeySteps = key == g.lastKey ? g.sameKeySteps + 1 : 1;
      g.lastKey = key;
      return replay(e, m, *g.captured, x, y, labels, *g.stream, false);
    }
    g.captured.reset();
    dropped = "graph dropped (" + stale + "); ";
    g.lastKey.clear();
    g.sameKeySteps = 0;
  }

  const int64_t run = key == g.lastKey ? g.sameKeySteps + 1 : 1;
  g.lastKey = key;
  g.sameKeySteps = run;
  if (run <= kWarmupSteps) {
    ++g.eagerSteps;
    if (g.captured) {
      g.reason = "input shapes " + shapeText(key) + " differ from the captured " + shapeText(g.captured->key) + " (recaptured after " +
                 std::to_string(kWarmupSteps) + " steps in a row at the new shapes)";
    } else {
      g.reason = dropped + "warming up (" + std::to_string(run) + " of " + std::to_string(kWarmupSteps) + " eager steps before capture)";
    }
    return std::nullopt;
  }
  g.captured.reset();
  m.inference.reset();
  try {
    g.captured = capture(e, m, x, y, labels, key, *g.stream);
  } catch (const Postpone& wait) {
    ++g.eagerSteps;
    g.reason = wait.what();
    return std::nullopt;
  } catch (const std::exception& err) {
    g.failure = std::string("capture failed, running eagerly: ") + err.what();
    if (e.spec.cudaGraphs == "on") throw Error("cudaGraphs is 'on' but the step could not be captured: " + std::string(err.what()));
    ++g.eagerSteps;
    g.reason = g.failure;
    return std::nullopt;
  }
  ++g.captures;
  ++g.replays;
  g.reason.clear();
  return replay(e, m, *g.captured, x, y, labels, *g.stream, true);
}


namespace {

std::vector<const void*> moduleAddresses(const torch::jit::Module& module) {
  std::vector<const void*> out;
  for (const at::Tensor& p : module.parameters()) out.push_back(p.data_ptr());
  for (const at::Tensor& b : module.buffers()) out.push_back(b.data_ptr());
  return out;
}

}  // namespace

Probabilities predict(Model::Impl& m, torch::jit::Module& module, const at::Tensor& x, bool tta, bool allowGraph,
                      const std::function<Probabilities(const at::Tensor&)>& compute) {
  if (!m.predictGraphs) m.predictGraphs = std::make_shared<PredictGraphs>();
  PredictGraphs& pg = *m.predictGraphs;
  if (!allowGraph || !m.device.is_cuda() || !pg.failure.empty()) {
    ++pg.eagerCalls;
    pg.reason = !allowGraph ? "cudaGraph is off for this call"
                : !m.device.is_cuda() ? "the model is on " + m.device.str() + ", not a CUDA device"
                                      : pg.failure;
    return compute(x);
  }
  const c10::cuda::CUDAGuard deviceGuard(m.device.index());
  const c10::cuda::CUDAStream previous = c10::cuda::getCurrentCUDAStream(m.device.index());
  if (!pg.stream) pg.stream = c10::cuda::getStreamFromPool(false, m.device.index());
  std::ostringstream keyText;
  keyText << x.sizes() << (tta ? " tta " : " plain ") << module._ivalue().get() << " " << m.spec.precision;
  const std::string key = keyText.str();
  const uint64_t now = ++pg.clock;

  PredictEntry* entry = nullptr;
  for (auto it = pg.entries.begin(); it != pg.entries.end(); ++it) {
    if ((*it)->key != key) continue;
    if ((*it)->addresses == moduleAddresses(module)) {
      entry = it->get();
    } else {
      pg.entries.erase(it);  // the weights moved: capture again
    }
    break;
  }
  Probabilities out;
  {
    StreamScope scope = enterStream(*pg.stream);
    if (entry == nullptr) {
      const int64_t calls = ++pg.seen[key];
      if (pg.seen.size() > 64) pg.seen.clear();
      if (calls < 2) {
        ++pg.eagerCalls;
        pg.reason = "first call at this input shape (captured on the second)";
        out = compute(x);
        out.first.record_stream(previous);
        if (out.second.defined()) out.second.record_stream(previous);
        return out;
      }
      auto fresh = std::make_unique<PredictEntry>();
      fresh->key = key;
      fresh->module = module;
      const auto floats = at::TensorOptions().dtype(at::kFloat).device(m.device);
      fresh->x = at::empty(x.sizes(), floats, m.spec.channelsLast && x.dim() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
      fresh->x.copy_(x, /*non_blocking=*/true);
      const bool autocastCache = at::autocast::is_autocast_cache_enabled();
      at::autocast::set_autocast_cache_enabled(false);
      try {
        fresh->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
        fresh->out = compute(fresh->x);
        fresh->graph.capture_end();
      } catch (const std::exception& err) {
        at::autocast::set_autocast_cache_enabled(autocastCache);
        abandonCapture(fresh->graph, *pg.stream, m.device.index());
        pg.failure = std::string("capture failed, predicting eagerly: ") + err.what();
        ++pg.eagerCalls;
        pg.reason = pg.failure;
        out = compute(x);
        out.first.record_stream(previous);
        if (out.second.defined()) out.second.record_stream(previous);
        return out;
      }
      at::autocast::set_autocast_cache_enabled(autocastCache);
      fresh->addresses = moduleAddresses(module);
      ++pg.captures;
      if (pg.entries.size() >= kPredictGraphs) {
        auto oldest = std::min_element(pg.entries.begin(), pg.entries.end(),
                                       [](const auto& a, const auto& b) { return a->lastUse < b->lastUse; });
        pg.entries.erase(oldest);
      }
      entry = fresh.get();
      pg.entries.push_back(std::move(fresh));
    } else {
      entry->x.copy_(x, /*non_blocking=*/true);
    }
    entry->lastUse = now;
    entry->graph.replay();
    ++pg.replays;
    pg.reason.clear();
  }
  // Copies made on the caller's stream (after it waited for the replay): they outlive the next replay.
  return {entry->out.first.clone(), entry->out.second.defined() ? entry->out.second.clone() : at::Tensor()};
}

#endif  // PN_CUDA_GRAPHS

}  // namespace pn::graphs
