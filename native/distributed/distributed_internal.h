// Torch side of native/distributed/, shared by process_group.cpp (the c10d group, collectives and
// the DDP hook) and sync_batch_norm.cpp (SyncBatchNorm). Never include from the N-API layer (native/binding/).
//
// Both files are compiled with PN_WITH_DISTRIBUTED (and PN_WITH_NCCL) when CMake found c10d and
// gloo's headers; the compile check (scripts/compile-check.mjs) also checks them with both set
// against LibTorch 2.6's CPU and CUDA headers.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <torch/script.h>
#include <torch/version.h>

#include "distributed_api.h"

#if PN_WITH_DISTRIBUTED
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // ProcessGroupGloo.hpp is empty without it (LibTorch's CMake config usually sets it)
#endif
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if PN_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1  // as USE_C10D_GLOO: ProcessGroupNCCL.hpp is empty without it on LibTorch 2.x
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace pn {

struct ProcessGroup::Impl {
  ProcessGroupSpec spec;
  /** Serialises collectives issued from JS (tasks on different threads must keep one order). */
  std::mutex mutex;
#if PN_WITH_DISTRIBUTED
  c10::intrusive_ptr<c10d::Store> store;
  /** The spec's backend: gradients, model broadcasts, SyncBatchNorm. */
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  /** CPU values (loss checks, epoch figures, barriers): `group` itself for Gloo, a Gloo group beside NCCL. */
  c10::intrusive_ptr<c10d::ProcessGroup> cpuGroup;
#endif
};

#if PN_WITH_DISTRIBUTED
namespace dist_detail {

/** "rank R of N (backend, host:port)", for errors. */
std::string where(const ProcessGroup::Impl& g);
/** Waits for a c10d work handle; a failure (a dead peer, a timeout) names the collective and this rank. */
void waitFor(const ProcessGroup::Impl& g, const c10::intrusive_ptr<c10d::Work>& work, const char* what);

// ---- SyncBatchNorm (sync_batch_norm.cpp) ---------------------------------------------------------

/**
 * Makes `group` reachable from the pneumo::sync_batch_norm operator under the returned id (an
 * integer constant in the training graph); the registration ends when the returned object dies.
 */
class SyncGroupRegistration {
 public:
  explicit SyncGroupRegistration(std::shared_ptr<ProcessGroup::Impl> group);
  ~SyncGroupRegistration();
  SyncGroupRegistration(const SyncGroupRegistration&) = delete;
  SyncGroupRegistration& operator=(const SyncGroupRegistration&) = delete;
  int64_t id() const { return id_; }

 private:
  int64_t id_;
};

/** The training-forward twin of a model whose BatchNorm layers run as SyncBatchNorm. */
struct SyncBatchNormModule {
  /**
   * A module of its own class whose slots are the original's (the very same submodules,
   * parameters and buffers: nothing is copied) and whose forward is the original's forward with
   * every call inlined and every aten::batch_norm replaced by pneumo::sync_batch_norm. Checkpoints
   * keep saving the original module, whose BatchNorm layers stay ordinary.
   */
  torch::jit::Module module;
  /** The aten::batch_norm calls replaced (the BatchNorm layers the forward runs). */
  int64_t layers = 0;
};

/** Builds the twin of `original` for the group registered under `groupId`. */
SyncBatchNormModule buildSyncBatchNormModule(const torch::jit::Module& original, int64_t groupId);
/** Points the twin's slots at the original's current ones (its `training` flag, a replaced attribute). */
void refreshSyncBatchNormModule(const torch::jit::Module& original, torch::jit::Module& twin);

}  // namespace dist_detail
#endif

}  // namespace pn
