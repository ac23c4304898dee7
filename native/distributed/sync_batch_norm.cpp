// SyncBatchNorm for data-parallel training (training.syncBatchNorm, `train --sync-bn`): BatchNorm
// whose training-mode statistics are those of the global batch (every rank's images), computed as
// torch.nn.SyncBatchNorm computes them, over the run's c10d process group.
//
// The operator. pneumo::sync_batch_norm has aten::batch_norm's schema plus the id of a registered
// process group. In training mode with more than one rank it runs SyncBatchNormFunction (a
// torch::autograd::Function):
//   forward   each rank's per-channel mean and biased variance (at::var_mean), turned into sums
//             (n*mean, n*(var + mean^2), n) in float64 and all-reduced (c10d all_reduce, sum): the
//             global mean and biased variance normalise the input; the running statistics are
//             updated with the global mean and the unbiased global variance (var * N / (N - 1)),
//             so they are identical on every rank;
//   backward  each rank's sum_dy and sum_dy_xmu per channel (sum of dy and of dy * (x - mean)),
//             all-reduced together (c10d all_reduce, sum), give the input gradient as
//             (dy - sum_dy / N - (x - mean) * invstd^2 * sum_dy_xmu / N) * invstd * weight
//             (batch_norm_backward_elemt's formula); the weight and bias gradients stay per rank
//             (sum_dy_xmu * invstd, sum_dy), left to the Reducer's averaging, as in PyTorch.
// Otherwise (eval mode, one rank) it is at::batch_norm, exactly what the model ran before.
// Statistics are computed in float32 (float64 for the cross-rank sums) whatever the input dtype
// (autocast's bf16/fp16 inputs included), the output and input gradient in the input's dtype.
//
// Switching it on. The zoo's BatchNorm2d (native/models/layers.cpp) and the BatchNorm layers of
// TorchScript encoders are compiled TorchScript whose forward calls aten::batch_norm; checkpoints
// save that module as it is, and must stay loadable as ordinary BatchNorm by torch.jit.load. So
// the model is left untouched: buildSyncBatchNormModule() makes a training twin, a module of a new
// class holding the model's own submodules, parameters and buffers (the same objects) whose
// forward is the model's forward with every method and function call inlined and every
// aten::batch_norm replaced by pneumo::sync_batch_norm. TrainEngine's training forward runs the
// twin (TrainStepHook::trainingModule); everything else (validation, checkpoints, exports, the
// optimizer, the Reducer) sees the original module and the very same tensors.
#include "distributed_internal.h"

#include <cmath>
#include <map>
#include <vector>

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/library.h>

#include "../core/torch_internal.h"

#if PN_WITH_DISTRIBUTED

namespace pn::dist_detail {

namespace {

// ---- the registry of process groups the operator can reach ------------------------------------

std::mutex gSyncGroupsMutex;
std::map<int64_t, std::weak_ptr<ProcessGroup::Impl>> gSyncGroups;
int64_t gNextSyncGroupId = 1;

std::shared_ptr<ProcessGroup::Impl> syncGroupOf(int64_t id) {
  std::lock_guard<std::mutex> lock(gSyncGroupsMutex);
  auto it = gSyncGroups.find(id);
  std::shared_ptr<ProcessGroup::Impl> g = it == gSyncGroups.end() ? nullptr : it->second.lock();
  TORCH_CHECK(g != nullptr && g->group, "SyncBatchNorm: process group ", id,
              " is not registered or was destroyed (a training graph outlived its data-parallel engine)");
  return g;
}

// ---- the autograd function ----------------------------------------------------------------------

/** [1, C, 1, ...]: a per-channel vector broadcast against an input of `dim` dimensions. */
std::vector<int64_t> channelShape(int64_t dim, int64_t channels) {
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[1] = channels;
  return shape;
}

/** Every dimension but the channels (1). */
std::vector<int64_t> reducedDims(int64_t dim) {
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < dim; ++d) {
    if (d != 1) dims.push_back(d);
  }
  return dims;
}

/** Float32 or float64 stay; bf16/fp16 (autocast) are computed in float32. */
at::Tensor computeDtype(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble ? t : t.to(at::kFloat);
}

class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& runningMean, const at::Tensor& runningVar, double momentum,
                            double eps, int64_t groupId) {
    // The cross-rank arithmetic is ours: no autocast casts inside it.
    c10::impl::ExcludeDispatchKeyGuard noAutocast(c10::autocast_dispatch_keyset);
    std::shared_ptr<ProcessGroup::Impl> g = syncGroupOf(groupId);
    TORCH_CHECK(input.dim() >= 2, "SyncBatchNorm: expected an input of at least 2 dimensions (N, C, ...) but received ", input.sizes());
    const at::Tensor x = computeDtype(input);
    const int64_t channels = x.size(1);
    const int64_t count = channels == 0 ? 0 : x.numel() / channels;
    const auto f64 = x.options().dtype(at::kDouble);

    // This rank's count, mean and biased variance (float64), every rank's (all_gather: the counts
    // may differ), then the global ones by Chan's parallel formula: M2 = sum_r n_r * var_r +
    // n_r * (mean_r - mean)^2, never E[x^2] - E[x]^2 (whose cancellation costs float32 digits).
    at::Tensor local = at::zeros({3, channels}, f64);
    if (count > 0) {
      auto [var, mean] = at::var_mean(x, reducedDims(x.dim()), /*unbiased=*/false, /*keepdim=*/false);
      local[0].fill_(static_cast<double>(count));
      local[1].copy_(mean);
      local[2].copy_(var);
    }
    const int64_t world = g->spec.worldSize;
    std::vector<at::Tensor> mine{local};
    std::vector<std::vector<at::Tensor>> gathered(1);
    for (int64_t r = 0; r < world; ++r) gathered[0].push_back(at::empty_like(local));
    waitFor(*g, g->group->allgather(gathered, mine), "all_gather of SyncBatchNorm statistics");
    const at::Tensor all = at::stack(gathered[0]);  // [world, 3, C]
    const at::Tensor counts = all.select(1, 0);
    const at::Tensor means = all.select(1, 1);
    const at::Tensor vars = all.select(1, 2);
    const at::Tensor n = counts.sum(0);
    const double total = n[0].item<double>();
    TORCH_CHECK(total > 1, "SyncBatchNorm: expected more than 1 value per channel over all ranks when training, got ", total,
                " (input ", input.sizes(), " on ", where(*g), ")");
    const at::Tensor globalMean = (counts * means).sum(0) / n;
    const at::Tensor deviation = means - globalMean;
    const at::Tensor globalVar = (counts * (vars + deviation * deviation)).sum(0) / n;

    if (runningMean.defined()) runningMean.mul_(1 - momentum).add_(globalMean.to(runningMean.scalar_type()), momentum);
    if (runningVar.defined()) {
      runningVar.mul_(1 - momentum).add_((globalVar * (total / (total - 1))).to(runningVar.scalar_type()), momentum);
    }

    const at::Tensor mean = globalMean.to(x.scalar_type());
    const at::Tensor invstd = (globalVar + eps).rsqrt().to(x.scalar_type());
    const std::vector<int64_t> shape = channelShape(x.dim(), channels);
    at::Tensor scale = weight.defined() ? weight.to(x.scalar_type()) * invstd : invstd;
    at::Tensor shift = -mean * scale;
    if (bias.defined()) shift = shift + bias.to(x.scalar_type());
    at::Tensor out = at::addcmul(shift.view(shape), x, scale.view(shape));
    if (out.scalar_type() != input.scalar_type()) out = out.to(input.scalar_type());

    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["total"] = total;
    ctx->saved_data["group"] = groupId;
    ctx->saved_data["inputType"] = static_cast<int64_t>(input.scalar_type());
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    c10::impl::ExcludeDispatchKeyGuard noAutocast(c10::autocast_dispatch_keyset);
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& mean = saved[2];
    const at::Tensor& invstd = saved[3];
    const double total = ctx->saved_data["total"].toDouble();
    const int64_t groupId = ctx->saved_data["group"].toInt();
    const auto inputType = static_cast<at::ScalarType>(ctx->saved_data["inputType"].toInt());
    torch::autograd::variable_list out(8);
    if (!grads[0].defined()) return out;
    const at::Tensor dy = grads[0].to(x.scalar_type());
    const int64_t channels = x.size(1);
    const std::vector<int64_t> shape = channelShape(x.dim(), channels);
    const std::vector<int64_t> dims = reducedDims(x.dim());

    const at::Tensor xmu = x - mean.view(shape);
    at::Tensor sumDy = at::sum(dy, dims, false, at::kDouble).to(x.scalar_type());
    at::Tensor sumDyXmu = at::sum(dy * xmu, dims, false, at::kDouble).to(x.scalar_type());
    // This rank's weight and bias gradients: the Reducer averages them over the ranks.
    if (weight.defined() && ctx->needs_input_grad(1)) out[1] = (sumDyXmu * invstd).to(weight.scalar_type());
    if (ctx->needs_input_grad(2)) out[2] = sumDy.to(weight.defined() ? weight.scalar_type() : x.scalar_type());
    if (ctx->needs_input_grad(0)) {
      std::shared_ptr<ProcessGroup::Impl> g = syncGroupOf(groupId);
      std::vector<at::Tensor> buffers{at::cat({sumDy, sumDyXmu})};
      waitFor(*g, g->group->allreduce(buffers), "all_reduce of SyncBatchNorm gradients");
      const at::Tensor meanDy = buffers[0].narrow(0, 0, channels) / total;
      const at::Tensor meanDyXmu = buffers[0].narrow(0, channels, channels) / total;
      const at::Tensor projection = invstd * invstd * meanDyXmu;
      const at::Tensor gradScale = weight.defined() ? invstd * weight.to(x.scalar_type()) : invstd;
      at::Tensor dx = (dy - meanDy.view(shape) - xmu * projection.view(shape)) * gradScale.view(shape);
      out[0] = dx.scalar_type() == inputType ? dx : dx.to(inputType);
    }
    return out;
  }
};

at::Tensor syncBatchNorm(const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                         const c10::optional<at::Tensor>& runningMean, const c10::optional<at::Tensor>& runningVar, bool training,
                         double momentum, double eps, bool cudnnEnabled, int64_t groupId) {
  if (training) {
    std::shared_ptr<ProcessGroup::Impl> g = syncGroupOf(groupId);
    if (g->spec.worldSize > 1) {
      const auto orUndefined = [](const c10::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); };
      return SyncBatchNormFunction::apply(input, orUndefined(weight), orUndefined(bias), orUndefined(runningMean), orUndefined(runningVar),
                                          momentum, eps, groupId);
    }
  }
  // Eval mode, or one rank: what the model ran before (autocast still applies, as it did).
  return at::batch_norm(input, weight, bias, runningMean, runningVar, training, momentum, eps, cudnnEnabled);
}

constexpr const char* kSyncBatchNorm = "pneumo::sync_batch_norm";

// ---- the training twin ---------------------------------------------------------------------------

/** The graph function a call node runs (prim::CallMethod on a class, prim::CallFunction of a constant), or null. */
torch::jit::GraphFunction* calleeOf(torch::jit::Node* node) {
  torch::jit::Function* fn = nullptr;
  if (node->kind() == c10::prim::CallMethod) {
    auto type = node->input(0)->type()->cast<c10::ClassType>();
    if (!type) return nullptr;  // an interface: resolved at run time, left as a call
    fn = type->findMethod(node->s(c10::attr::name));
  } else if (node->kind() == c10::prim::CallFunction) {
    auto fnType = node->input(0)->type()->cast<c10::FunctionType>();
    if (!fnType) return nullptr;
    fn = fnType->function();
  }
  return fn == nullptr ? nullptr : torch::jit::tryToGraphFunction(*fn);
}

/** Inlines every call in `block` (one level: the inlined bodies are visited by the next pass). */
int64_t inlineCallsOnce(torch::jit::Block* block) {
  int64_t inlined = 0;
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    torch::jit::Node* node = *it++;
    if (torch::jit::GraphFunction* callee = calleeOf(node)) {
      callee->ensure_defined();
      if (node->kind() == c10::prim::CallFunction) node->removeInput(0);  // the function constant
      torch::jit::inlineCallTo(node, callee, callee->graph().get());
      ++inlined;
    } else {
      for (torch::jit::Block* sub : node->blocks()) inlined += inlineCallsOnce(sub);
    }
  }
  return inlined;
}

/** Replaces every aten::batch_norm under `block` by pneumo::sync_batch_norm(..., groupId). */
int64_t replaceBatchNorms(torch::jit::Graph& graph, torch::jit::Block* block, int64_t groupId) {
  static const c10::Symbol kBatchNorm = c10::Symbol::fromQualString("aten::batch_norm");
  static const c10::Symbol kSync = c10::Symbol::fromQualString(kSyncBatchNorm);
  int64_t replaced = 0;
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    torch::jit::Node* node = *it++;
    for (torch::jit::Block* sub : node->blocks()) replaced += replaceBatchNorms(graph, sub, groupId);
    if (node->kind() != kBatchNorm || node->inputs().size() != 9) continue;
    torch::jit::WithInsertPoint insertBefore(node);
    torch::jit::Value* id = graph.insertConstant(groupId);
    torch::jit::Node* sync = graph.create(kSync, 1);
    for (torch::jit::Value* in : node->inputs()) sync->addInput(in);
    sync->addInput(id);
    sync->output()->setType(node->output()->type());
    sync->insertBefore(node);
    sync->getOperator();  // resolves the registered schema now (throws if the operator is missing)
    node->output()->replaceAllUsesWith(sync->output());
    node->destroy();
    ++replaced;
  }
  return replaced;
}

}  // namespace

SyncGroupRegistration::SyncGroupRegistration(std::shared_ptr<ProcessGroup::Impl> group) {
  std::lock_guard<std::mutex> lock(gSyncGroupsMutex);
  id_ = gNextSyncGroupId++;
  gSyncGroups[id_] = std::move(group);
}

SyncGroupRegistration::~SyncGroupRegistration() {
  std::lock_guard<std::mutex> lock(gSyncGroupsMutex);
  gSyncGroups.erase(id_);
}

SyncBatchNormModule buildSyncBatchNormModule(const torch::jit::Module& original, int64_t groupId) {
  const c10::ClassTypePtr& type = original.type();
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  SyncBatchNormModule out;
  out.module = torch::jit::Module(c10::QualifiedName("__torch__.pn.SyncBatchNormTraining"), cu, /*shouldMangle=*/true);
  const c10::ClassTypePtr& twinType = out.module.type();
  // The same slots in the same order, holding the same objects (submodules, tensors, flags).
  for (size_t i = 0; i < type->numAttributes(); ++i) {
    twinType->addAttribute(type->getAttributeName(i), type->getAttribute(i), type->is_parameter(i), type->is_buffer(i));
  }
  for (size_t i = 0; i < type->numConstants(); ++i) twinType->addConstant(type->getConstantName(i), type->getConstant(i));
  refreshSyncBatchNormModule(original, out.module);

  std::shared_ptr<torch::jit::Graph> graph = original.get_method("forward").graph()->copy();
  // Whole-model inlining: each pass inlines one level of calls; TorchScript has no recursion.
  for (int pass = 0; inlineCallsOnce(graph->block()) > 0; ++pass) {
    TORCH_CHECK(pass < 1000, "SyncBatchNorm: inlining the model's forward did not terminate");
  }
  out.layers = replaceBatchNorms(*graph, graph->block(), groupId);
  graph->inputs()[0]->setType(twinType);
  torch::jit::Function* forward = cu->create_function(c10::QualifiedName(*twinType->name(), "forward"), graph);
  twinType->addMethod(forward);
  return out;
}

void refreshSyncBatchNormModule(const torch::jit::Module& original, torch::jit::Module& twin) {
  const size_t slots = original.type()->numAttributes();
  TORCH_CHECK(twin.type()->numAttributes() == slots, "SyncBatchNorm: the training twin no longer matches the model's attributes");
  for (size_t i = 0; i < slots; ++i) twin._ivalue()->setSlot(i, original._ivalue()->getSlot(i));
}

}  // namespace pn::dist_detail

TORCH_LIBRARY(pneumo, m) {
  m.def(
      "sync_batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, bool training, "
      "float momentum, float eps, bool cudnn_enabled, int group) -> Tensor",
      torch::dispatch(c10::DispatchKey::CompositeImplicitAutograd, TORCH_FN(pn::dist_detail::syncBatchNorm)));
}

#endif  // PN_WITH_DISTRIBUTED
