// The N-API boundary of pneumo-native: the only code that sees both JavaScript and the native core.
// It converts JS values to the torch-free C++ APIs (native/<concept>/*_api.h), runs anything that
// can take more than about a millisecond as a Task returning a Promise (task.h), and turns pn::Error
// into JS errors. One slice per concept, each with its TypeScript counterpart (src/native/<concept>.ts):
//
//   tensor.cc       NativeTensor, factories, arithmetic        core/api.h
//   runtime.cc      threads, seed, cuDNN, CUDA memory, info    core/api.h
//   data.cc         native image batches                       data/data_api.h
//   augment.cc      augmentBatch                               augment/augment_api.h
//   train.cc        losses, optimizer handles, train engine    losses/loss_api.h, optim/optim_api.h, train/train_api.h
//   model.cc        NativeModel, checkpoints, prediction       models/model_api.h, train/train_api.h
//   swa.cc          state-dict averaging, BatchNorm recompute  train/train_api.h
//   scoring.cc      threshold-search summaries, predictSummaries  inference/thresholds_api.h
//   store.cc        the prepared image store's native reader   data/store_api.h
//   distributed.cc  c10d process groups                        distributed/distributed_api.h
//
// This file registers them all (slices.h).
#include <napi.h>

#include "../core/api.h"
#include "slices.h"

#ifndef PN_VERSION
#define PN_VERSION "0.0.0"
#endif

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pn::installCpuAllocator();
  env.SetInstanceData<pn::binding::AddonData>(new pn::binding::AddonData());
  exports.Set("version", Napi::String::New(env, PN_VERSION));
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  pn::binding::InitTensor(env, exports);
  pn::binding::InitRuntime(env, exports);
  pn::binding::InitData(env, exports);
  pn::binding::InitAugment(env, exports);
  pn::binding::InitTrain(env, exports);
  pn::binding::InitModel(env, exports);
  pn::binding::InitSwa(env, exports);
  pn::binding::InitScoring(env, exports);
  pn::binding::InitStore(env, exports);
  pn::binding::InitDistributed(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(pneumo_native, Init)
