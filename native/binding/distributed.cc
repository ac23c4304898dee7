// The distributed slice of the N-API boundary (native/distributed/distributed_api.h <->
// src/native/distributed.ts): c10d process groups (type-tagged Externals), their collectives, and
// data-parallel training engines.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"
#include "../distributed/distributed_api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace pn::binding {
namespace {

const napi_type_tag kProcessGroupTag = {0x706e70726f636573ULL, 0x732d67726f757031ULL};

pn::ProcessGroup groupArg(const Napi::CallbackInfo& info, size_t i) {
  const pn::ProcessGroup& g = taggedArg<pn::ProcessGroup>(info, i, kProcessGroupTag, "a process group handle");
  if (!g.defined()) throw Napi::Error::New(info.Env(), "the process group has been destroyed");
  return g;
}

/** distributedInfo() -> { available, reason, backends } */
Napi::Value DistributedInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("available", pn::distributedAvailable());
  o.Set("reason", pn::distributedUnavailableReason());
  auto backends = Napi::Array::New(env);
  uint32_t k = 0;
  for (const std::string& b : pn::distributedBackends()) backends.Set(k++, b);
  o.Set("backends", backends);
  return o;
}

/** createProcessGroup({ backend, masterAddr, masterPort, rank, worldSize, timeoutSeconds }) -> Promise<handle> (the rendezvous blocks a pool thread). */
Napi::Value CreateProcessGroup(const Napi::CallbackInfo& info) {
  const Napi::Object o = optionsArg(info, 0);
  pn::ProcessGroupSpec spec;
  const auto str = [&](const char* key, std::string& out) {
    const Napi::Value v = o.Get(key);
    if (!v.IsString()) throwType(info.Env(), std::string("Expected a string for ") + key);
    out = v.As<Napi::String>().Utf8Value();
  };
  const auto num = [&](const char* key) {
    const Napi::Value v = o.Get(key);
    if (!v.IsNumber()) throwType(info.Env(), std::string("Expected a number for ") + key);
    return v.As<Napi::Number>().DoubleValue();
  };
  str("backend", spec.backend);
  str("masterAddr", spec.masterAddr);
  spec.masterPort = static_cast<int64_t>(num("masterPort"));
  spec.rank = static_cast<int64_t>(num("rank"));
  spec.worldSize = static_cast<int64_t>(num("worldSize"));
  spec.timeoutSeconds = num("timeoutSeconds");
  return Task<pn::ProcessGroup>::Run(
      info.Env(), "pneumo.createProcessGroup", [spec] { return pn::createProcessGroup(spec); },
      [](Napi::Env env, pn::ProcessGroup& g) -> Napi::Value { return makeHandle(env, std::move(g), kProcessGroupTag); },
      RunOn::Pool);
}

Napi::Value ProcessGroupBarrier(const Napi::CallbackInfo& info) {
  pn::ProcessGroup g = groupArg(info, 0);
  return Task<int>::Run(
      info.Env(), "pneumo.processGroupBarrier",
      [g] {
        pn::processGroupBarrier(g);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
}

/** processGroupAllGatherBytes(group, Uint8Array) -> Promise<Uint8Array[]> (every rank's bytes, in rank order). */
Napi::Value ProcessGroupAllGatherBytes(const Napi::CallbackInfo& info) {
  pn::ProcessGroup g = groupArg(info, 0);
  if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throwType(info.Env(), "Expected a Uint8Array for bytes");
  }
  const auto a = info[1].As<Napi::Uint8Array>();
  std::vector<uint8_t> bytes(a.Data(), a.Data() + a.ElementLength());
  return Task<std::vector<std::vector<uint8_t>>>::Run(
      info.Env(), "pneumo.processGroupAllGatherBytes", [g, bytes] { return pn::processGroupAllGatherBytes(g, bytes); },
      [](Napi::Env env, std::vector<std::vector<uint8_t>>& all) -> Napi::Value {
        auto out = Napi::Array::New(env, all.size());
        for (size_t r = 0; r < all.size(); ++r) {
          auto buffer = Napi::Uint8Array::New(env, all[r].size());
          if (!all[r].empty()) std::copy(all[r].begin(), all[r].end(), buffer.Data());
          out.Set(static_cast<uint32_t>(r), buffer);
        }
        return out;
      },
      RunOn::Pool);
}

/** processGroupAllReduceSum(group, Float64Array) -> Promise<Float64Array> (sums over ranks). */
Napi::Value ProcessGroupAllReduceSum(const Napi::CallbackInfo& info) {
  pn::ProcessGroup g = groupArg(info, 0);
  if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throwType(info.Env(), "Expected a Float64Array for values");
  }
  const auto a = info[1].As<Napi::Float64Array>();
  std::vector<double> values(a.Data(), a.Data() + a.ElementLength());
  return Task<std::vector<double>>::Run(
      info.Env(), "pneumo.processGroupAllReduceSum", [g, values] { return pn::processGroupAllReduceSum(g, values); },
      [](Napi::Env env, std::vector<double>& sums) -> Napi::Value {
        auto out = Napi::Float64Array::New(env, sums.size());
        std::copy(sums.begin(), sums.end(), out.Data());
        return out;
      },
      RunOn::Pool);
}

/** processGroupBroadcastModel(group, model, root) -> Promise<void>: parameters and buffers from root. */
Napi::Value ProcessGroupBroadcastModel(const Napi::CallbackInfo& info) {
  pn::ProcessGroup g = groupArg(info, 0);
  pn::Model m = modelArg(info, 1);
  const int64_t root = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : 0;
  return Task<int>::Run(
      info.Env(), "pneumo.processGroupBroadcastModel",
      [g, m, root] {
        pn::processGroupBroadcastModel(g, m, root);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

/**
 * attachDistributed(engine, group, bucketMb, broadcastBuffers, syncBatchNorm): the engine's steps
 * become data-parallel; returns the BatchNorm layers synchronised (0 without syncBatchNorm).
 */
Napi::Value AttachDistributed(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  pn::ProcessGroup g = groupArg(info, 1);
  const double bucketMb = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 25.0;
  const bool broadcastBuffers = info.Length() > 3 && info[3].ToBoolean().Value();
  const bool syncBatchNorm = info.Length() > 4 && info[4].ToBoolean().Value();  // syncbn
  const int64_t layers = syncCall(info.Env(), [&] { return pn::attachDistributed(e, g, bucketMb, broadcastBuffers, syncBatchNorm); });
  return Napi::Number::New(info.Env(), static_cast<double>(layers));
}

Napi::Value DestroyProcessGroup(const Napi::CallbackInfo& info) {
  pn::ProcessGroup& g = taggedArg<pn::ProcessGroup>(info, 0, kProcessGroupTag, "a process group handle");
  pn::ProcessGroup held = g;
  g = pn::ProcessGroup();
  syncCall(info.Env(), [&] {
    pn::destroyProcessGroup(held);
    return 0;
  });
  return info.Env().Undefined();
}

}  // namespace

void InitDistributed(Napi::Env env, Napi::Object exports) {
  exports.Set("distributedInfo", Napi::Function::New(env, DistributedInfo, "distributedInfo"));
  exports.Set("createProcessGroup", Napi::Function::New(env, CreateProcessGroup, "createProcessGroup"));
  exports.Set("processGroupBarrier", Napi::Function::New(env, ProcessGroupBarrier, "processGroupBarrier"));
  exports.Set("processGroupAllGatherBytes", Napi::Function::New(env, ProcessGroupAllGatherBytes, "processGroupAllGatherBytes"));
  exports.Set("processGroupAllReduceSum", Napi::Function::New(env, ProcessGroupAllReduceSum, "processGroupAllReduceSum"));
  exports.Set("processGroupBroadcastModel", Napi::Function::New(env, ProcessGroupBroadcastModel, "processGroupBroadcastModel"));
  exports.Set("attachDistributed", Napi::Function::New(env, AttachDistributed, "attachDistributed"));
  exports.Set("destroyProcessGroup", Napi::Function::New(env, DestroyProcessGroup, "destroyProcessGroup"));
}

}  // namespace pn::binding
