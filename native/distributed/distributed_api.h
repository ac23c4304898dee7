// The torch-free API of pneumo-native's data-parallel training, for native/binding/ (napi.h + torch-free
// headers only). The torch side (native/distributed/process_group.cpp) is PyTorch's c10d: a
// TCPStore rendezvous (rank 0 serves it at MASTER_ADDR:MASTER_PORT, as torchrun), ProcessGroupGloo
// (every build) or ProcessGroupNCCL (LibTorch with CUDA + NCCL), and c10d's Reducer for the
// gradients (bucketed all-reduce launched from autograd hooks, overlapping backward). No collective
// here is home-made: every one is a c10d call on the process group.
//
// Compiled in only when the LibTorch found ships c10d with gloo's headers (CMake sets
// PN_WITH_DISTRIBUTED); otherwise every call throws the reason (distributedUnavailableReason()).
// Every function succeeds or throws pn::Error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/api.h"
#include "../models/model_api.h"
#include "../train/train_api.h"

namespace pn {

/** Whether this build has c10d (Gloo, and NCCL when listed in distributedBackends()). */
bool distributedAvailable();
/** Empty when available; otherwise why not (for the "distributed training unavailable" error). */
std::string distributedUnavailableReason();
/** The backends compiled in ("gloo", "nccl"). */
std::vector<std::string> distributedBackends();

struct ProcessGroupSpec {
  /** "gloo" or "nccl". */
  std::string backend = "gloo";
  /** The rendezvous: rank 0 serves a TCPStore there, the others connect (MASTER_ADDR/PORT). */
  std::string masterAddr = "127.0.0.1";
  int64_t masterPort = 29500;
  int64_t rank = 0;
  int64_t worldSize = 1;
  /** Rendezvous and every collective give up after this (a dead or stuck rank: an error, never a hang). */
  double timeoutSeconds = 300;
};

/** A c10d process group (with its store); copies share it. */
class ProcessGroup {
 public:
  struct Impl;
  ProcessGroup();
  explicit ProcessGroup(std::shared_ptr<Impl> impl);
  bool defined() const { return impl_ != nullptr; }
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

/** Joins the group: blocks until every rank has connected (or the timeout passes). */
ProcessGroup createProcessGroup(const ProcessGroupSpec& spec);
int64_t processGroupRank(const ProcessGroup& group);
int64_t processGroupSize(const ProcessGroup& group);
std::string processGroupBackend(const ProcessGroup& group);
/** c10d barrier. */
void processGroupBarrier(const ProcessGroup& group);
/**
 * c10d all_gather of byte strings of any length (their lengths first, then the bytes padded to the
 * longest): every rank receives every rank's bytes, in rank order.
 */
std::vector<std::vector<uint8_t>> processGroupAllGatherBytes(const ProcessGroup& group, const std::vector<uint8_t>& bytes);
/** c10d all_reduce (sum, in place) of float64 values: the sum over ranks of each value. */
std::vector<double> processGroupAllReduceSum(const ProcessGroup& group, const std::vector<double>& values);
/** Broadcasts the model's parameters and buffers from `root` (coalesced, c10d broadcast). */
void processGroupBroadcastModel(const ProcessGroup& group, const Model& model, int64_t root);
/**
 * Makes `engine`'s training steps data-parallel over `group` (DistributedDataParallel's engine):
 * c10d's Reducer all-reduces (and averages) the gradients in buckets of `bucketMb` MiB from
 * autograd hooks while backward runs; calls that only accumulate skip it (no_sync); the ranks agree
 * on a non-finite loss before backward so that none waits for another; with `broadcastBuffers`,
 * rank 0's BatchNorm statistics are broadcast before each forward (DDP's broadcast_buffers).
 * The Reducer is rebuilt when the set of trainable parameters changes (a frozen encoder).
 * With `syncBatchNorm`, the training forward's BatchNorm layers normalise with the statistics of
 * the global batch (SyncBatchNorm, sync_batch_norm.cpp); the model itself (checkpoints, exports,
 * eval-mode forwards) keeps ordinary BatchNorm. Returns the BatchNorm layers synchronised (0
 * without `syncBatchNorm`).
 */
int64_t attachDistributed(const TrainEngine& engine, const ProcessGroup& group, double bucketMb, bool broadcastBuffers,
                          bool syncBatchNorm = false);
/** Frees the group now (its threads and sockets); the handle becomes undefined everywhere. */
void destroyProcessGroup(const ProcessGroup& group);

}  // namespace pn
