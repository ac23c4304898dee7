// The runtime slice of the N-API boundary (native/core/api.h <-> src/native/runtime.ts): threads,
// seeding, cuDNN options, CUDA memory statistics, runtime information, the smoke test, counters
// and the CPU block cache.
#include <napi.h>

#include <cstdint>
#include <string>

#include "../core/api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace pn::binding {
namespace {

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  const int64_t n = argInteger(info, 0, "threads");
  syncCall(info.Env(), [&] {
    if (n < 1 || n > 1024) throw pn::Error("thread count must be between 1 and 1024, got " + std::to_string(n));
    pn::setNumThreads(static_cast<int>(n));
    return 0;
  });
  return info.Env().Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pn::numThreads()); }

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  uint64_t seed = 0;
  if (info.Length() > 0 && info[0].IsBigInt()) {
    bool lossless = true;
    seed = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  } else {
    const int64_t n = argInteger(info, 0, "seed");
    if (n < 0) throwType(info.Env(), "Expected a non-negative integer for seed");
    seed = static_cast<uint64_t>(n);
  }
  syncCall(info.Env(), [&] {
    pn::manualSeed(seed);
    return 0;
  });
  return info.Env().Undefined();
}

/** setCudnnOptions(benchmark?, deterministic?, allowTf32?) -> the options now in force (undefined keeps one). */
Napi::Value SetCudnnOptions(const Napi::CallbackInfo& info) {
  const auto flag = [&](size_t i, bool current) {
    if (info.Length() <= i || info[i].IsUndefined()) return current;
    if (!info[i].IsBoolean()) throwType(info.Env(), "Expected booleans (or undefined) for setCudnnOptions(benchmark, deterministic, allowTf32)");
    return info[i].As<Napi::Boolean>().Value();
  };
  const pn::CudnnOptions now = syncCall(info.Env(), [&] {
    const pn::CudnnOptions current = pn::cudnnOptions();
    pn::setCudnnOptions(flag(0, current.benchmark), flag(1, current.deterministic), flag(2, current.allowTf32));
    return pn::cudnnOptions();
  });
  auto o = Napi::Object::New(info.Env());
  o.Set("benchmark", now.benchmark);
  o.Set("deterministic", now.deterministic);
  o.Set("allowTf32", now.allowTf32);
  return o;
}

/** cudaMemoryStats(device, resetPeak) -> { allocated, peakAllocated, reserved, peakReserved } (bytes). */
Napi::Value CudaMemoryStats(const Napi::CallbackInfo& info) {
  const int64_t device = argInteger(info, 0, "device");
  const bool reset = info.Length() > 1 && info[1].ToBoolean().Value();
  const pn::CudaMemoryStats s = syncCall(info.Env(), [&] { return pn::cudaMemoryStats(static_cast<int>(device), reset); });
  auto o = Napi::Object::New(info.Env());
  o.Set("allocated", static_cast<double>(s.allocated));
  o.Set("peakAllocated", static_cast<double>(s.peakAllocated));
  o.Set("reserved", static_cast<double>(s.reserved));
  o.Set("peakReserved", static_cast<double>(s.peakReserved));
  return o;
}

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  return Task<pn::RuntimeInfo>::Run(info.Env(), "pneumo.runtimeInfo", [] { return pn::runtimeInfo(); },
                                    [](Napi::Env env, pn::RuntimeInfo& r) -> Napi::Value {
                                      auto o = Napi::Object::New(env);
                                      o.Set("torchVersion", r.torchVersion);
                                      o.Set("builtWithCuda", r.builtWithCuda);
                                      o.Set("cudaAvailable", r.cudaAvailable);
                                      o.Set("cudaDeviceCount", r.cudaDeviceCount);
                                      o.Set("cudnnAvailable", r.cudnnAvailable);
                                      o.Set("cudnnVersion", static_cast<double>(r.cudnnVersion));
                                      auto devices = Napi::Array::New(env, r.cudaDevices.size());
                                      for (size_t k = 0; k < r.cudaDevices.size(); ++k) {
                                        const auto& d = r.cudaDevices[k];
                                        auto dev = Napi::Object::New(env);
                                        dev.Set("index", d.index);
                                        dev.Set("name", d.name);
                                        dev.Set("totalMemory", static_cast<double>(d.totalMemory));
                                        dev.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
                                        dev.Set("multiProcessors", d.multiProcessors);
                                        devices.Set(static_cast<uint32_t>(k), dev);
                                      }
                                      o.Set("cudaDevices", devices);
                                      o.Set("intraOpThreads", r.intraOpThreads);
                                      o.Set("interOpThreads", r.interOpThreads);
                                      o.Set("mkldnn", r.mkldnn);
                                      o.Set("openmp", r.openmp);
                                      o.Set("parallelInfo", r.parallelInfo);
                                      o.Set("buildConfig", r.buildConfig);
                                      return o;
                                    });
}

Napi::Value SmokeTrain(const Napi::CallbackInfo& info) {
  const int batch = static_cast<int>(argInteger(info, 0, "batch"));
  const int size = static_cast<int>(argInteger(info, 1, "size"));
  const int steps = static_cast<int>(argInteger(info, 2, "steps"));
  const std::string device = argString(info, 3, "device");
  const auto seed = static_cast<uint64_t>(argInteger(info, 4, "seed"));
  return Task<pn::SmokeResult>::Run(info.Env(), "pneumo.smokeTrain", [=] { return pn::smokeTrain(batch, size, steps, device, seed); },
                                    [](Napi::Env env, pn::SmokeResult& r) -> Napi::Value {
                                      auto o = Napi::Object::New(env);
                                      auto losses = Napi::Array::New(env, r.losses.size());
                                      for (size_t k = 0; k < r.losses.size(); ++k) losses.Set(static_cast<uint32_t>(k), r.losses[k]);
                                      o.Set("losses", losses);
                                      o.Set("msPerStep", r.msPerStep);
                                      o.Set("gradientsFinite", r.gradientsFinite);
                                      o.Set("gradientNorm", r.gradientNorm);
                                      o.Set("parameters", static_cast<double>(r.parameters));
                                      o.Set("device", r.device);
                                      return o;
                                    });
}

Napi::Value Counters(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("queued", static_cast<double>(gTasksQueued.load()));
  o.Set("running", static_cast<double>(gTasksRunning.load()));
  o.Set("liveTensors", static_cast<double>(gLiveTensors.load()));
  o.Set("externalBytes", static_cast<double>(gReportedBytes.load()));
  const pn::CpuCacheStats cache = pn::cpuCacheStats();
  o.Set("cpuLiveBytes", static_cast<double>(cache.liveBytes));
  o.Set("cpuCachedBytes", static_cast<double>(cache.cachedBytes));
  o.Set("cpuCacheLimitBytes", static_cast<double>(cache.capBytes));
  o.Set("cpuCacheHits", static_cast<double>(cache.hits));
  o.Set("cpuCacheMisses", static_cast<double>(cache.misses));
  return o;
}

Napi::Value SetCpuCacheLimit(const Napi::CallbackInfo& info) {
  const int64_t bytes = argInteger(info, 0, "bytes");
  if (bytes < 0) throwType(info.Env(), "Expected a non-negative integer for bytes");
  pn::setCpuCacheLimit(static_cast<size_t>(bytes));
  return info.Env().Undefined();
}

Napi::Value EmptyCpuCache(const Napi::CallbackInfo& info) {
  pn::emptyCpuCache();
  return info.Env().Undefined();
}

}  // namespace

void InitRuntime(Napi::Env env, Napi::Object exports) {
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeed, "manualSeed"));
  exports.Set("setCudnnOptions", Napi::Function::New(env, SetCudnnOptions, "setCudnnOptions"));
  exports.Set("cudaMemoryStats", Napi::Function::New(env, CudaMemoryStats, "cudaMemoryStats"));
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo, "runtimeInfo"));
  exports.Set("smokeTrain", Napi::Function::New(env, SmokeTrain, "smokeTrain"));
  exports.Set("counters", Napi::Function::New(env, Counters, "counters"));
  exports.Set("setCpuCacheLimit", Napi::Function::New(env, SetCpuCacheLimit, "setCpuCacheLimit"));
  exports.Set("emptyCpuCache", Napi::Function::New(env, EmptyCpuCache, "emptyCpuCache"));
}

}  // namespace pn::binding
