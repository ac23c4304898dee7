// Data-parallel training over PyTorch's c10d (see distributed_api.h): the TCPStore rendezvous, the
// Gloo (or NCCL) process group, the collectives the trainer needs (barrier, all_gather of bytes,
// all_reduce of a few numbers, broadcast of a model), and the TrainStepHook that puts c10d's Reducer
// (DistributedDataParallel's C++ engine) under TrainEngine's backward.
//
// LibTorch versions: the code is written against LibTorch 1.13 (Debian bookworm), where
// ProcessGroupGloo *is* a c10d::ProcessGroup. LibTorch 2.x made the backends c10d::Backend objects
// held by a c10d::ProcessGroup; that difference is confined to wrapBackend() below. The 2.x and
// NCCL branches are compiled by scripts/compile-check.mjs against Debian trixie's LibTorch 2.6
// (CPU and CUDA) with its gloo and NCCL headers; they have not run on GPUs here.
#include "distributed_internal.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/torch_internal.h"
#include "../models/model_internal.h"
#include "../train/engine_hooks.h"

#if PN_WITH_DISTRIBUTED
#include <torch/csrc/distributed/c10d/reducer.hpp>
#endif

namespace pn {

ProcessGroup::ProcessGroup() = default;
ProcessGroup::ProcessGroup(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::vector<std::string> distributedBackends() {
  std::vector<std::string> out;
#if PN_WITH_DISTRIBUTED
  out.emplace_back("gloo");
#if PN_WITH_NCCL
  out.emplace_back("nccl");
#endif
#endif
  return out;
}

#if !PN_WITH_DISTRIBUTED

bool distributedAvailable() { return false; }
std::string distributedUnavailableReason() {
  return "distributed training unavailable: this build of pneumo-native has no c10d process groups (the LibTorch it was built "
         "against lacks torch/csrc/distributed/c10d/ProcessGroupGloo.hpp or gloo's headers; on Debian install libgloo-dev and "
         "rebuild with `npm run build`)";
}

namespace dist_detail {
[[noreturn]] void unavailable() { throw Error(distributedUnavailableReason()); }
}  // namespace dist_detail
using dist_detail::unavailable;

ProcessGroup createProcessGroup(const ProcessGroupSpec&) { unavailable(); }
int64_t processGroupRank(const ProcessGroup&) { unavailable(); }
int64_t processGroupSize(const ProcessGroup&) { unavailable(); }
std::string processGroupBackend(const ProcessGroup&) { unavailable(); }
void processGroupBarrier(const ProcessGroup&) { unavailable(); }
std::vector<std::vector<uint8_t>> processGroupAllGatherBytes(const ProcessGroup&, const std::vector<uint8_t>&) { unavailable(); }
std::vector<double> processGroupAllReduceSum(const ProcessGroup&, const std::vector<double>&) { unavailable(); }
void processGroupBroadcastModel(const ProcessGroup&, const Model&, int64_t) { unavailable(); }
int64_t attachDistributed(const TrainEngine&, const ProcessGroup&, double, bool, bool) { unavailable(); }
void destroyProcessGroup(const ProcessGroup&) {}

#else

bool distributedAvailable() { return true; }
std::string distributedUnavailableReason() { return ""; }

namespace dist_detail {

std::chrono::milliseconds timeoutOf(const ProcessGroupSpec& spec) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(spec.timeoutSeconds * 1000.0)));
}

bool isLoopback(const std::string& addr) { return addr == "127.0.0.1" || addr == "localhost" || addr == "::1"; }

/** Gloo's transport device: GLOO_SOCKET_IFNAME as torch.distributed, loopback for a loopback master, else the host's. */
std::shared_ptr<::gloo::transport::Device> glooDevice(const std::string& masterAddr) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (isLoopback(masterAddr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

/**
 * A c10d::ProcessGroup around one backend. LibTorch 1.x: the backend *is* the process group. 2.x:
 * backends are c10d::Backend objects held by a c10d::ProcessGroup, registered per device type; the
 * group's constructor took an Options object until 2.5 and takes none from 2.6 (both are handled by
 * the `if constexpr` below, so the code compiles against either).
 */
template <typename Group = c10d::ProcessGroup, typename Backend>
c10::intrusive_ptr<c10d::ProcessGroup> wrapBackend(const c10::intrusive_ptr<Backend>& backend, const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                  int size, const std::string& name, std::chrono::milliseconds timeout) {
#if TORCH_VERSION_MAJOR >= 2
  c10::intrusive_ptr<Group> group;
  if constexpr (std::is_constructible_v<Group, const c10::intrusive_ptr<c10d::Store>&, int, int>) {
    group = c10::make_intrusive<Group>(store, rank, size);
  } else {
    group = c10::make_intrusive<Group>(store, rank, size, c10::make_intrusive<typename Group::Options>(name, timeout));
  }
  const auto type = name == "nccl" ? Group::BackendType::NCCL : Group::BackendType::GLOO;
  // Gloo serves CPU tensors and, as torch.distributed registers it, CUDA tensors too; NCCL serves CUDA.
  if (name != "nccl") group->setBackend(c10::DeviceType::CPU, type, backend);
  group->setBackend(c10::DeviceType::CUDA, type, backend);
  group->setDefaultBackend(type);
  return group;
#else
  (void)store, (void)rank, (void)size, (void)name, (void)timeout;
  return backend;
#endif
}

/** Gloo over `store` (a prefix of it when another backend shares the store). */
c10::intrusive_ptr<c10d::ProcessGroup> makeGloo(const ProcessGroupSpec& spec, const c10::intrusive_ptr<c10d::Store>& store) {
  const auto timeout = timeoutOf(spec);
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(glooDevice(spec.masterAddr));
  const int rank = static_cast<int>(spec.rank);
  const int size = static_cast<int>(spec.worldSize);
  return wrapBackend(c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options), store, rank, size, "gloo", timeout);
}

/**
 * The process groups of `spec`: the main one (the spec's backend: gradients, model broadcasts,
 * SyncBatchNorm) and the one for the few CPU values the trainer exchanges (loss checks, epoch
 * figures, barriers): the same group for Gloo, a Gloo group beside NCCL (NCCL has no CPU
 * tensors), as torch.distributed's "cpu:gloo,cuda:nccl".
 */
std::pair<c10::intrusive_ptr<c10d::ProcessGroup>, c10::intrusive_ptr<c10d::ProcessGroup>> makeProcessGroups(const ProcessGroupSpec& spec,
                                                                                                              const c10::intrusive_ptr<c10d::Store>& store) {
#if PN_WITH_NCCL
  if (spec.backend == "nccl") {
    const auto timeout = timeoutOf(spec);
    const int rank = static_cast<int>(spec.rank);
    const int size = static_cast<int>(spec.worldSize);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto ncclStore = c10::make_intrusive<c10d::PrefixStore>("nccl", store);
    auto nccl = wrapBackend(c10::make_intrusive<c10d::ProcessGroupNCCL>(ncclStore, rank, size, options), ncclStore, rank, size, "nccl", timeout);
    auto cpu = makeGloo(spec, c10::make_intrusive<c10d::PrefixStore>("gloo", store));
    return {nccl, cpu};
  }
#endif
  auto gloo = makeGloo(spec, store);
  return {gloo, gloo};
}

ProcessGroup::Impl& groupOf(const ProcessGroup& group) {
  if (!group.defined() || !group.impl()->group) throw Error("process group is undefined (destroyed or never created)");
  return *group.impl();
}

std::string where(const ProcessGroup::Impl& g) {
  return "rank " + std::to_string(g.spec.rank) + " of " + std::to_string(g.spec.worldSize) + " (" + g.spec.backend + ", " +
         g.spec.masterAddr + ":" + std::to_string(g.spec.masterPort) + ")";
}

/** Waits for a c10d work handle; a failure (a dead peer, a timeout) names the collective and this rank. */
void waitFor(const ProcessGroup::Impl& g, const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait();
  } catch (const c10::Error& e) {
    throw Error(std::string("distributed ") + what + " failed on " + where(g) + ": " + e.what_without_backtrace() +
                " (another rank probably stopped: see its log)");
  } catch (const std::exception& e) {
    throw Error(std::string("distributed ") + what + " failed on " + where(g) + ": " + e.what() + " (another rank probably stopped: see its log)");
  }
}

/** c10d broadcast of `tensors` from `root`, flattened per dtype into one buffer each (DDP's coalesced broadcast). */
void broadcastCoalesced(ProcessGroup::Impl& g, const std::vector<at::Tensor>& tensors, int64_t root, const char* what) {
  torch::NoGradGuard noGrad;
  std::vector<std::vector<at::Tensor>> byType;
  std::vector<at::ScalarType> types;
  for (const at::Tensor& t : tensors) {
    auto it = std::find(types.begin(), types.end(), t.scalar_type());
    if (it == types.end()) {
      types.push_back(t.scalar_type());
      byType.emplace_back();
      it = types.end() - 1;
    }
    byType[static_cast<size_t>(it - types.begin())].push_back(t);
  }
  for (const std::vector<at::Tensor>& same : byType) {
    std::vector<at::Tensor> flat{at::flatten_dense_tensors(same)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    waitFor(g, g.group->broadcast(flat, options), what);
    if (g.spec.rank == root) continue;
    std::vector<at::Tensor> parts = at::unflatten_dense_tensors(flat[0], same);
    for (size_t k = 0; k < same.size(); ++k) same[k].copy_(parts[k]);
  }
}

/** DistributedDataParallel under TrainEngine: c10d's Reducer on the trainable parameters. */
class DdpHook final : public TrainStepHook {
 public:
  DdpHook(std::shared_ptr<ProcessGroup::Impl> group, double bucketMb, bool broadcastBuffers)
      : group_(std::move(group)), bucketBytes_(static_cast<int64_t>(bucketMb * 1024 * 1024)), broadcastBuffers_(broadcastBuffers) {}

  /** SyncBatchNorm: registers the group for the operator and builds the training twin of `module`. */
  int64_t enableSyncBatchNorm(const torch::jit::Module& module) {
    sync_ = std::make_unique<SyncGroupRegistration>(group_);
    buildTwin(module);
    return twin_.layers;
  }

  torch::jit::Module& trainingModule(torch::jit::Module& module) override { return sync_ ? twin_.module : module; }

  void beforeForward(torch::jit::Module& module) override {
    ProcessGroup::Impl& g = *group_;
    if (!g.group) throw Error("process group is undefined (destroyed or never created)");
    std::vector<at::Tensor> trainable;
    for (const at::Tensor& p : module.parameters()) {
      if (p.requires_grad()) trainable.push_back(p);
    }
    if (!sameTensors(trainable, params_)) rebuild(std::move(trainable));
    if (sync_) {
      // The twin holds the model's own submodules: only a model whose top-level object was
      // replaced needs a new one; otherwise its slots follow the model's (the training flag).
      if (twinOf_.get() != module._ivalue().get()) {
        buildTwin(module);
      } else {
        refreshSyncBatchNormModule(module, twin_.module);
      }
    }
    if (broadcastBuffers_ && g.spec.worldSize > 1) {
      std::vector<at::Tensor> buffers;
      for (const at::Tensor& b : module.buffers()) buffers.push_back(b);
      if (!buffers.empty()) broadcastCoalesced(g, buffers, 0, "broadcast of BatchNorm statistics");
    }
    // As DistributedDataParallel.forward: the bucket order seen in the first backward is
    // broadcast from rank 0 and the buckets rebuilt once (a collective: every rank calls it).
    try {
      reducer_->rebuild_buckets();
      reducer_->prepare_for_forward();
    } catch (const c10::Error& e) {
      throw Error(std::string("distributed gradient buckets failed on ") + where(g) + ": " + e.what_without_backtrace());
    }
  }

  bool agreeFinite(bool finite) override {
    ProcessGroup::Impl& g = *group_;
    std::vector<at::Tensor> flag{at::full({1}, finite ? 0.0 : 1.0, at::TensorOptions().dtype(at::kDouble))};
    waitFor(g, g.cpuGroup->allreduce(flag), "all_reduce of the loss check");
    return flag[0].item<double>() == 0.0;
  }

  void beforeBackward(const at::Tensor& loss, bool sync) override {
    // Calls that only accumulate run backward without the Reducer's hooks (DDP's no_sync).
    if (sync) reducer_->prepare_for_backward({loss});
  }

 private:
  static bool sameTensors(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
    if (a.size() != b.size()) return false;
    for (size_t k = 0; k < a.size(); ++k) {
      if (!a[k].is_same(b[k])) return false;
    }
    return true;
  }

  void rebuild(std::vector<at::Tensor> params) {
    ProcessGroup::Impl& g = *group_;
    reducer_.reset();
    params_ = std::move(params);
    if (params_.empty()) throw Error("Expected trainable parameters for data-parallel training but every parameter is frozen");
    try {
      // As DistributedDataParallel: a small first bucket (it starts all-reducing early), then
      // buckets of bucket_cap_mb, in reverse parameter order (roughly the order backward produces
      // the gradients).
      const std::vector<size_t> limits{static_cast<size_t>(c10d::kDefaultFirstBucketBytes), static_cast<size_t>(bucketBytes_)};
      std::vector<int64_t> order(params_.size());
      for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int64_t>(order.size() - 1 - k);
      const std::vector<bool> sparse(params_.size(), false);
      auto [buckets, perBucketLimits] = c10d::compute_bucket_assignment_by_size(params_, limits, sparse, order);
      reducer_ = std::make_shared<c10d::Reducer>(params_, std::move(buckets), std::move(perBucketLimits), g.group, sparse, bucketBytes_,
                                                 /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
                                                 std::unordered_map<size_t, std::string>{}, c10d::kDefaultFirstBucketBytes);
    } catch (const c10::Error& e) {
      throw Error(std::string("distributed gradient buckets could not be built on ") + where(g) + ": " + e.what_without_backtrace());
    }
  }

  void buildTwin(const torch::jit::Module& module) {
    try {
      twin_ = buildSyncBatchNormModule(module, sync_->id());
    } catch (const c10::Error& e) {
      throw Error(std::string("SyncBatchNorm could not be set up for this model on ") + where(*group_) + ": " + e.what_without_backtrace());
    }
    twinOf_ = module._ivalue();
  }

  std::shared_ptr<ProcessGroup::Impl> group_;
  int64_t bucketBytes_;
  bool broadcastBuffers_;
  std::vector<at::Tensor> params_;
  std::shared_ptr<c10d::Reducer> reducer_;
  /** SyncBatchNorm (null when off): the group's registration, the training twin and its model object. */
  std::unique_ptr<SyncGroupRegistration> sync_;
  SyncBatchNormModule twin_;
  c10::intrusive_ptr<c10::ivalue::Object> twinOf_;
};

}  // namespace dist_detail

ProcessGroup createProcessGroup(const ProcessGroupSpec& spec) {
  using namespace dist_detail;
  if (spec.backend != "gloo" && spec.backend != "nccl") throw Error("Expected backend 'gloo' or 'nccl' but received '" + spec.backend + "'");
#if !PN_WITH_NCCL
  if (spec.backend == "nccl") {
    throw Error("the nccl backend is unavailable: this build of pneumo-native has no NCCL (a LibTorch with CUDA and NCCL is needed); use gloo");
  }
#endif
  if (spec.worldSize < 1) throw Error("Expected a world size of at least 1 but received " + std::to_string(spec.worldSize));
  if (spec.rank < 0 || spec.rank >= spec.worldSize) {
    throw Error("Expected a rank between 0 and " + std::to_string(spec.worldSize - 1) + " but received " + std::to_string(spec.rank));
  }
  if (spec.masterPort < 1 || spec.masterPort > 65535) throw Error("Expected a master port between 1 and 65535 but received " + std::to_string(spec.masterPort));
  if (!(spec.timeoutSeconds > 0) || !std::isfinite(spec.timeoutSeconds)) {
    throw Error("Expected a timeout > 0 seconds but received " + std::to_string(spec.timeoutSeconds));
  }
  auto impl = std::make_shared<ProcessGroup::Impl>();
  impl->spec = spec;
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(spec.masterPort);
    options.isServer = spec.rank == 0;
    options.numWorkers = static_cast<std::size_t>(spec.worldSize);
    options.waitWorkers = true;
    options.timeout = timeoutOf(spec);
    impl->store = c10::make_intrusive<c10d::TCPStore>(spec.masterAddr, options);
    std::tie(impl->group, impl->cpuGroup) = makeProcessGroups(spec, impl->store);
  } catch (const c10::Error& e) {
    throw Error("could not join the process group as " + where(*impl) + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Error("could not join the process group as " + where(*impl) + ": " + e.what());
  }
  return ProcessGroup(std::move(impl));
}

int64_t processGroupRank(const ProcessGroup& group) { return dist_detail::groupOf(group).spec.rank; }
int64_t processGroupSize(const ProcessGroup& group) { return dist_detail::groupOf(group).spec.worldSize; }
std::string processGroupBackend(const ProcessGroup& group) { return dist_detail::groupOf(group).spec.backend; }

void processGroupBarrier(const ProcessGroup& group) {
  ProcessGroup::Impl& g = dist_detail::groupOf(group);
  std::lock_guard<std::mutex> lock(g.mutex);
  dist_detail::waitFor(g, g.cpuGroup->barrier(), "barrier");
}

std::vector<std::vector<uint8_t>> processGroupAllGatherBytes(const ProcessGroup& group, const std::vector<uint8_t>& bytes) {
  using namespace dist_detail;
  ProcessGroup::Impl& g = groupOf(group);
  std::lock_guard<std::mutex> lock(g.mutex);
  return guard([&] {
    const int64_t world = g.spec.worldSize;
    const auto i64 = at::TensorOptions().dtype(at::kLong);
    std::vector<at::Tensor> length{at::full({1}, static_cast<int64_t>(bytes.size()), i64)};
    std::vector<std::vector<at::Tensor>> lengths(1);
    for (int64_t r = 0; r < world; ++r) lengths[0].push_back(at::empty({1}, i64));
    waitFor(g, g.cpuGroup->allgather(lengths, length), "all_gather of lengths");
    int64_t longest = 1;
    std::vector<int64_t> sizes;
    for (const at::Tensor& t : lengths[0]) {
      sizes.push_back(t.item<int64_t>());
      longest = std::max(longest, sizes.back());
    }
    const auto u8 = at::TensorOptions().dtype(at::kByte);
    std::vector<at::Tensor> mine{at::zeros({longest}, u8)};
    if (!bytes.empty()) std::memcpy(mine[0].data_ptr<uint8_t>(), bytes.data(), bytes.size());
    std::vector<std::vector<at::Tensor>> all(1);
    for (int64_t r = 0; r < world; ++r) all[0].push_back(at::empty({longest}, u8));
    waitFor(g, g.cpuGroup->allgather(all, mine), "all_gather");
    std::vector<std::vector<uint8_t>> out;
    for (int64_t r = 0; r < world; ++r) {
      const uint8_t* p = all[0][static_cast<size_t>(r)].data_ptr<uint8_t>();
      out.emplace_back(p, p + sizes[static_cast<size_t>(r)]);
    }
    return out;
  });
}

std::vector<double> processGroupAllReduceSum(const ProcessGroup& group, const std::vector<double>& values) {
  using namespace dist_detail;
  ProcessGroup::Impl& g = groupOf(group);
  std::lock_guard<std::mutex> lock(g.mutex);
  return guard([&] {
    if (values.empty()) return std::vector<double>{};
    std::vector<at::Tensor> t{at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(at::kDouble))};
    std::memcpy(t[0].data_ptr<double>(), values.data(), values.size() * sizeof(double));
    waitFor(g, g.cpuGroup->allreduce(t), "all_reduce");
    const double* p = t[0].data_ptr<double>();
    return std::vector<double>(p, p + values.size());
  });
}

void processGroupBroadcastModel(const ProcessGroup& group, const Model& model, int64_t root) {
  using namespace dist_detail;
  ProcessGroup::Impl& g = groupOf(group);
  if (root < 0 || root >= g.spec.worldSize) {
    throw Error("Expected a root rank between 0 and " + std::to_string(g.spec.worldSize - 1) + " but received " + std::to_string(root));
  }
  if (!model.defined()) throw Error("model is undefined (disposed or never created)");
  Model::Impl& m = *model.impl();
  std::lock_guard<std::mutex> lock(g.mutex);
  std::lock_guard<std::mutex> modelLock(m.mutex);
  guard([&] {
    std::vector<at::Tensor> tensors;
    for (const at::Tensor& p : m.module.parameters()) tensors.push_back(p);
    for (const at::Tensor& b : m.module.buffers()) tensors.push_back(b);
    broadcastCoalesced(g, tensors, root, "broadcast of the model");
    m.inference.reset();
    return 0;
  });
}

int64_t attachDistributed(const TrainEngine& engine, const ProcessGroup& group, double bucketMb, bool broadcastBuffers, bool syncBatchNorm) {
  using namespace dist_detail;
  groupOf(group);
  if (!(bucketMb > 0) || !std::isfinite(bucketMb)) throw Error("Expected a bucket size > 0 MiB but received " + std::to_string(bucketMb));
  auto hook = std::make_shared<DdpHook>(group.impl(), bucketMb, broadcastBuffers);
  int64_t layers = 0;
  if (syncBatchNorm) {
    const Model model = trainEngineModel(engine);
    if (!model.defined()) throw Error("model is undefined (disposed or never created)");
    Model::Impl& m = *model.impl();
    std::lock_guard<std::mutex> modelLock(m.mutex);
    layers = guard([&] { return hook->enableSyncBatchNorm(m.module); });
  }
  setTrainStepHook(engine, std::move(hook));
  return layers;
}

void destroyProcessGroup(const ProcessGroup& group) {
  if (!group.defined()) return;
  ProcessGroup::Impl& g = *group.impl();
  std::lock_guard<std::mutex> lock(g.mutex);
  g.group.reset();
  g.cpuGroup.reset();
  g.store.reset();
}

#endif  // PN_WITH_DISTRIBUTED

}  // namespace pn
