// The N-API boundary of pneumo-native: the only file that sees both JavaScript and the native
// core. It converts JS values to the torch-free C++ API in core/api.h, runs anything that can take
// more than about a millisecond in an AsyncWorker (returning a Promise), and turns pn::Error into
// JS errors. Its TypeScript counterpart is src/native/binding.ts; keep the two in step.
#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/api.h"
#include "models/model_api.h"
#include "data/data_api.h"
#include "augment/augment_api.h"
#include "losses/loss_api.h"
#include "optim/optim_api.h"
#include "train/train_api.h"
#include "inference/thresholds_api.h"
#include "distributed/distributed_api.h"

#ifndef PN_VERSION
#define PN_VERSION "0.0.0"
#endif

void InitStore(Napi::Env env, Napi::Object exports);  // native/binding_store.cc

namespace {

// ---- counters visible from JS ---------------------------------------------------------------

std::atomic<int64_t> gTasksQueued{0};
std::atomic<int64_t> gTasksRunning{0};
std::atomic<int64_t> gLiveTensors{0};
std::atomic<int64_t> gReportedBytes{0};

// ---- argument helpers -------------------------------------------------------------------------

[[noreturn]] void throwType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

std::string argString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) throwType(info.Env(), std::string("Expected a string for ") + name);
  return info[i].As<Napi::String>().Utf8Value();
}

double argNumber(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) throwType(info.Env(), std::string("Expected a number for ") + name);
  return info[i].As<Napi::Number>().DoubleValue();
}

int64_t argInteger(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const double v = argNumber(info, i, name);
  if (v != static_cast<double>(static_cast<int64_t>(v))) throwType(info.Env(), std::string("Expected an integer for ") + name);
  return static_cast<int64_t>(v);
}

std::vector<int64_t> argIntArray(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsArray()) throwType(info.Env(), std::string("Expected an array of integers for ") + name);
  const auto array = info[i].As<Napi::Array>();
  std::vector<int64_t> out;
  out.reserve(array.Length());
  for (uint32_t k = 0; k < array.Length(); ++k) {
    const Napi::Value v = array.Get(k);
    if (!v.IsNumber()) throwType(info.Env(), std::string("Expected an array of integers for ") + name);
    const double d = v.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d))) throwType(info.Env(), std::string("Expected an array of integers for ") + name);
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

pn::DType argDType(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const std::string s = argString(info, i, name);
  pn::DType dtype;
  if (!pn::parseDType(s, &dtype)) throwType(info.Env(), std::string("Unknown dtype '") + s + "' for " + name);
  return dtype;
}

Napi::Array toJsArray(Napi::Env env, const std::vector<int64_t>& values) {
  auto array = Napi::Array::New(env, values.size());
  for (size_t k = 0; k < values.size(); ++k) array.Set(static_cast<uint32_t>(k), Napi::Number::New(env, static_cast<double>(values[k])));
  return array;
}

// ---- AsyncWorker returning a Promise ----------------------------------------------------------

/**
 * The one thread that runs LibTorch's multi-threaded compute. libgomp gives every thread that
 * starts a parallel region its own team of workers, and once it manages more threads than there
 * are cores it all but stops spinning between regions (its throttled spin count): a network's
 * hundreds of short parallel ops then each pay a futex wake-up. With tasks landing on any of
 * libuv's threads, a training step ran 10-25% slower than the same step in one Python thread
 * (measured: unet_r18 and scseunet_se50 at 256 px); on this one thread it does not. Every other
 * thread runs LibTorch serially (pn::useSerialThread), so this thread's team stays the only one.
 */
class ComputeThread {
 public:
  static ComputeThread& instance() {
    static ComputeThread* thread = new ComputeThread();  // never destroyed: lives with the process
    return *thread;
  }

  /**
   * Runs `job` on the compute thread and waits for it. `job` should not throw; if it does, the
   * exception is caught on the compute thread (the loop must never see one: it would reach
   * std::terminate) and rethrown here, on the caller's thread.
   */
  void run(const std::function<void()>& job) {
    std::mutex doneMutex;
    std::condition_variable doneCv;
    bool done = false;
    std::exception_ptr error;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.emplace_back([&]() noexcept {
        try {
          job();
        } catch (...) {
          error = std::current_exception();
        }
        std::lock_guard<std::mutex> doneLock(doneMutex);
        done = true;
        doneCv.notify_one();
      });
    }
    ready_.notify_one();
    std::unique_lock<std::mutex> lock(doneMutex);
    doneCv.wait(lock, [&] { return done; });
    if (error) std::rethrow_exception(error);
  }

 private:
  ComputeThread() { std::thread([this] { loop(); }).detach(); }

  void loop() noexcept {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [&] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      try {
        job();  // the wrappers made by run() catch everything; this is the last line of defence
      } catch (...) {
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
};

/** Where a task runs: LibTorch compute on the compute thread, or I/O, copies, decoding and other
 * work with threads of its own on a libuv worker (LibTorch serial there), overlapping compute. */
enum class RunOn { Compute, Pool };

/**
 * Runs `work` off the main thread and settles a Promise with `done(env, result)` on the main
 * thread. Lambdas must not capture napi_values (they die with the caller's HandleScope): capture
 * C++ values, or JS objects through a shared Napi::ObjectReference.
 */
template <typename R>
class Task final : public Napi::AsyncWorker {
 public:
  using Work = std::function<R()>;
  using Done = std::function<Napi::Value(Napi::Env, R&)>;

  static Napi::Promise Run(Napi::Env env, const char* name, Work work, Done done, RunOn where = RunOn::Compute) {
    auto* task = new Task(env, name, std::move(work), std::move(done), where);
    Napi::Promise promise = task->deferred_.Promise();
    ++gTasksQueued;
    task->Queue();
    return promise;
  }

 private:
  Task(Napi::Env env, const char* name, Work work, Done done, RunOn where)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)), where_(where) {}

  void Execute() override {
    --gTasksQueued;
    ++gTasksRunning;
    std::optional<std::string> error;
    auto body = [&] {
      try {
        if (where_ == RunOn::Compute) {
          pn::syncThreads();
        } else {
          pn::useSerialThread();
        }
        result_.emplace(work_());
      } catch (const std::exception& e) {
        error = e.what();
      } catch (...) {
        error = "unknown native error";
      }
    };
    // body never throws: the compute thread's loop must not see an exception. Queueing the job
    // itself can fail (no memory): that, too, becomes the promise's rejection.
    try {
      if (where_ == RunOn::Compute) {
        ComputeThread::instance().run(body);
      } else {
        body();
      }
    } catch (const std::exception& e) {
      if (!error) error = e.what();
    } catch (...) {
      if (!error) error = "unknown native error";
    }
    if (error) SetError(*error);
    --gTasksRunning;
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    try {
      deferred_.Resolve(done_(env, *result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(env, e.what()).Value());
    }
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  RunOn where_;
  std::optional<R> result_;
};

/** Runs a synchronous native call, turning pn::Error into a JS Error. */
template <typename Fn>
auto syncCall(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// ---- Tensor -----------------------------------------------------------------------------------

class NativeTensor;

struct AddonData {
  Napi::FunctionReference tensorConstructor;
  Napi::FunctionReference modelConstructor;
};

Napi::Object wrapTensor(Napi::Env env, pn::Tensor tensor);

/** A JS object owning one pn::Tensor; freed by dispose() or, failing that, by its finalizer. */
class NativeTensor final : public Napi::ObjectWrap<NativeTensor> {
 public:
  /** Output arrays at least this large use external memory from the caching allocator. */
  static constexpr size_t kExternalThresholdBytes = 256 * 1024;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeTensor",
                       {
                           InstanceAccessor<&NativeTensor::Shape>("shape"),
                           InstanceAccessor<&NativeTensor::DTypeName>("dtype"),
                           InstanceAccessor<&NativeTensor::Device>("device"),
                           InstanceAccessor<&NativeTensor::NBytes>("nbytes"),
                           InstanceAccessor<&NativeTensor::Disposed>("disposed"),
                           InstanceMethod<&NativeTensor::Dispose>("dispose"),
                           InstanceMethod<&NativeTensor::ToTypedArraySync>("toTypedArraySync"),
                           InstanceMethod<&NativeTensor::ToTypedArray>("toTypedArray"),
                           InstanceMethod<&NativeTensor::TakeTypedArray>("takeTypedArray"),
                           InstanceMethod<&NativeTensor::To>("to"),
                           InstanceMethod<&NativeTensor::Item>("item"),
                       });
  }

  explicit NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throwType(info.Env(), "NativeTensor cannot be constructed from JS: use the Tensor factory functions");
    }
    tensor_ = *info[0].As<Napi::External<pn::Tensor>>().Data();
    ++gLiveTensors;
    if (tensor_.isCpu()) {
      reported_ = static_cast<int64_t>(tensor_.nbytes());
      if (reported_ > 0) {
        Napi::MemoryManagement::AdjustExternalMemory(info.Env(), reported_);
        gReportedBytes += reported_;
      }
    }
  }

  ~NativeTensor() override = default;

  void Finalize(Napi::Env env) override { release(env); }

  /** The tensor, or a JS error if it was disposed. */
  const pn::Tensor& get(Napi::Env env) const {
    if (!tensor_.defined()) throw Napi::Error::New(env, "Tensor has been disposed");
    return tensor_;
  }

  static const pn::Tensor& unwrapArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
    if (info.Length() <= i || !info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(constructorOf(info.Env()))) {
      throwType(info.Env(), std::string("Expected a Tensor for ") + name);
    }
    return Unwrap(info[i].As<Napi::Object>())->get(info.Env());
  }

  static Napi::Function constructorOf(Napi::Env env) { return env.GetInstanceData<AddonData>()->tensorConstructor.Value(); }

 private:
  void release(Napi::Env env) {
    if (tensor_.defined()) --gLiveTensors;
    tensor_ = pn::Tensor();
    if (reported_ > 0) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -reported_);
      gReportedBytes -= reported_;
    }
    reported_ = 0;
  }

  Napi::Value Shape(const Napi::CallbackInfo& info) { return toJsArray(info.Env(), syncCall(info.Env(), [&] { return get(info.Env()).shape(); })); }
  Napi::Value DTypeName(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), pn::dtypeName(syncCall(info.Env(), [&] { return get(info.Env()).dtype(); })));
  }
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), syncCall(info.Env(), [&] { return get(info.Env()).device(); })); }
  Napi::Value NBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(syncCall(info.Env(), [&] { return get(info.Env()).nbytes(); })));
  }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !tensor_.defined()); }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release(info.Env());
    return info.Env().Undefined();
  }

  static napi_typedarray_type typedArrayTypeFor(Napi::Env env, pn::DType dtype) {
    switch (dtype) {
      case pn::DType::Uint8: case pn::DType::Bool: return napi_uint8_array;
      case pn::DType::Int8: return napi_int8_array;
      case pn::DType::Int16: return napi_int16_array;
      case pn::DType::Int32: return napi_int32_array;
      case pn::DType::Int64: return napi_bigint64_array;
      case pn::DType::Float32: return napi_float32_array;
      case pn::DType::Float64: return napi_float64_array;
      default: throwType(env, std::string("no TypedArray holds ") + pn::dtypeName(dtype) + ": ask for float32");
    }
  }

  /**
   * A TypedArray over external memory: V8 neither zeroes nor owns it; `release` runs on the JS
   * thread when the array is collected. Returns an empty value where external buffers are not
   * allowed (e.g. Electron's V8 sandbox), so callers fall back to a V8-owned array.
   */
  static Napi::TypedArray externalTypedArray(Napi::Env env, pn::DType dtype, void* data, size_t numel,
                                             napi_finalize release, void* hint) {
    const size_t bytes = numel * pn::dtypeSize(dtype == pn::DType::Bool ? pn::DType::Uint8 : dtype);
    napi_value buffer;
    if (napi_create_external_arraybuffer(env, data, bytes, release, hint, &buffer) != napi_ok) {
      // Clear the pending exception, if any, and let the caller copy instead.
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
        napi_value ignored;
        napi_get_and_clear_last_exception(env, &ignored);
      }
      return Napi::TypedArray();
    }
    Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes));
    napi_value array;
    NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, typedArrayTypeFor(env, dtype), numel, buffer, 0, &array), Napi::TypedArray());
    return Napi::TypedArray(env, array);
  }

  struct HostBlock {
    void* data;
    int64_t bytes;
  };

  static void releaseHostBlock(napi_env env, void* data, void* hint) {
    auto* block = static_cast<HostBlock*>(hint);
    pn::freeHost(data);
    napi_adjust_external_memory(env, -block->bytes, nullptr);
    delete block;
  }

  /**
   * Allocates the JS TypedArray that will receive `numel` elements of `dtype`. Large arrays use
   * uninitialised memory from the caching CPU allocator (no zero-fill, pages reused after GC);
   * small ones are ordinary V8 arrays.
   */
  static Napi::TypedArray allocateTypedArray(Napi::Env env, pn::DType dtype, size_t numel) {
    const napi_typedarray_type type = typedArrayTypeFor(env, dtype);
    const size_t bytes = numel * pn::dtypeSize(dtype == pn::DType::Bool ? pn::DType::Uint8 : dtype);
    if (bytes >= kExternalThresholdBytes) {
      void* data = pn::allocHost(bytes);
      auto* block = new HostBlock{data, static_cast<int64_t>(bytes)};
      Napi::TypedArray array = externalTypedArray(env, dtype, data, numel, &releaseHostBlock, block);
      if (!array.IsEmpty()) return array;
      delete block;
      pn::freeHost(data);
    }
    switch (type) {
      case napi_uint8_array: return Napi::Uint8Array::New(env, numel);
      case napi_int8_array: return Napi::Int8Array::New(env, numel);
      case napi_int16_array: return Napi::Int16Array::New(env, numel);
      case napi_int32_array: return Napi::Int32Array::New(env, numel);
      case napi_bigint64_array: return Napi::BigInt64Array::New(env, numel);
      case napi_float32_array: return Napi::Float32Array::New(env, numel);
      default: return Napi::Float64Array::New(env, numel);
    }
  }

  static void* typedArrayData(const Napi::TypedArray& array) {
    return static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  }

  struct TakenTensor {
    pn::Tensor tensor;
    int64_t bytes;
  };

  static void releaseTakenTensor(napi_env env, void*, void* hint) {
    auto* taken = static_cast<TakenTensor*>(hint);
    napi_adjust_external_memory(env, -taken->bytes, nullptr);
    delete taken;
  }

  /**
   * takeTypedArray(dtype?): the elements as a TypedArray, then the tensor is disposed. When the
   * tensor solely owns contiguous CPU storage of that dtype, the array is that storage (no copy).
   */
  Napi::Value TakeTypedArray(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const pn::Tensor& t = get(env);
    const pn::DType dtype = info.Length() > 0 && !info[0].IsUndefined() ? argDType(info, 0, "dtype") : syncCall(env, [&] { return t.dtype(); });
    const size_t numel = static_cast<size_t>(syncCall(env, [&] { return t.numel(); }));
    // Our own handle must be the only one: move it out of the wrapper before checking.
    auto* taken = new TakenTensor{tensor_, 0};
    release(env);
    void* data = pn::exclusiveData(taken->tensor, dtype);
    if (data != nullptr) {
      taken->bytes = static_cast<int64_t>(taken->tensor.nbytes());
      Napi::TypedArray array = externalTypedArray(env, dtype, data, numel, &releaseTakenTensor, taken);
      if (!array.IsEmpty()) return array;
    }
    Napi::TypedArray out = allocateTypedArray(env, dtype, numel);
    const pn::DType hostType = dtype == pn::DType::Bool ? pn::DType::Uint8 : dtype;
    try {
      pn::toHost(taken->tensor, typedArrayData(out), out.ByteLength(), hostType);
    } catch (const std::exception& e) {
      delete taken;
      throw Napi::Error::New(env, e.what());
    }
    delete taken;
    return out;
  }

  Napi::Value ToTypedArraySync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const pn::Tensor& t = get(env);
    const pn::DType dtype = info.Length() > 0 && !info[0].IsUndefined() ? argDType(info, 0, "dtype") : syncCall(env, [&] { return t.dtype(); });
    const size_t numel = static_cast<size_t>(syncCall(env, [&] { return t.numel(); }));
    Napi::TypedArray out = allocateTypedArray(env, dtype, numel);
    syncCall(env, [&] {
      pn::toHost(t, typedArrayData(out), out.ByteLength(), dtype == pn::DType::Bool ? pn::DType::Uint8 : dtype);
      return 0;
    });
    return out;
  }

  Napi::Value ToTypedArray(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    pn::Tensor t = get(env);
    const pn::DType dtype = info.Length() > 0 && !info[0].IsUndefined() ? argDType(info, 0, "dtype") : syncCall(env, [&] { return t.dtype(); });
    const size_t numel = static_cast<size_t>(syncCall(env, [&] { return t.numel(); }));
    Napi::TypedArray out = allocateTypedArray(env, dtype, numel);
    void* dst = typedArrayData(out);
    const size_t bytes = out.ByteLength();
    const pn::DType hostType = dtype == pn::DType::Bool ? pn::DType::Uint8 : dtype;
    // The destination must outlive this call's HandleScope: hold it by a persistent reference
    // (released on the main thread when the task is deleted), never by its napi_value.
    auto destination = std::make_shared<Napi::ObjectReference>(Napi::Persistent(static_cast<Napi::Object>(out)));
    return Task<int>::Run(
        env, "pneumo.toTypedArray",
        [t, dst, bytes, hostType] {
          pn::toHost(t, dst, bytes, hostType);
          return 0;
        },
        [destination](Napi::Env, int&) -> Napi::Value { return destination->Value(); }, RunOn::Pool);
  }

  Napi::Value To(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    pn::Tensor t = get(env);
    const std::string device = argString(info, 0, "device");
    const pn::DType dtype = info.Length() > 1 && !info[1].IsUndefined() ? argDType(info, 1, "dtype") : syncCall(env, [&] { return t.dtype(); });
    return Task<pn::Tensor>::Run(
        env, "pneumo.to", [t, device, dtype] { return pn::to(t, device, dtype); },
        [](Napi::Env e, pn::Tensor& r) -> Napi::Value { return wrapTensor(e, std::move(r)); });
  }

  Napi::Value Item(const Napi::CallbackInfo& info) {
    pn::Tensor t = get(info.Env());
    return Task<double>::Run(
        info.Env(), "pneumo.item", [t] { return pn::item(t); },
        [](Napi::Env e, double& v) -> Napi::Value { return Napi::Number::New(e, v); }, RunOn::Pool);
  }

  pn::Tensor tensor_;
  int64_t reported_ = 0;
};

Napi::Object wrapTensor(Napi::Env env, pn::Tensor tensor) {
  return NativeTensor::constructorOf(env).New({Napi::External<pn::Tensor>::New(env, &tensor)});
}

Napi::Value tensorResult(Napi::Env env, pn::Tensor& t) { return wrapTensor(env, std::move(t)); }

// ---- module functions ---------------------------------------------------------------------------

/** fromTypedArray(array, shape, dstDtype, device): copies the array into a new tensor. */
Napi::Value FromTypedArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throwType(env, "Expected a TypedArray for data");
  const auto array = info[0].As<Napi::TypedArray>();
  const std::vector<int64_t> shape = argIntArray(info, 1, "shape");
  const pn::DType dst = argDType(info, 2, "dtype");
  const std::string device = argString(info, 3, "device");
  const void* data = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  const size_t bytes = array.ByteLength();
  pn::DType src;
  switch (array.TypedArrayType()) {
    case napi_uint8_array: case napi_uint8_clamped_array: src = pn::DType::Uint8; break;
    case napi_int8_array: src = pn::DType::Int8; break;
    case napi_int16_array: src = pn::DType::Int16; break;
    case napi_int32_array: src = pn::DType::Int32; break;
    case napi_float32_array: src = pn::DType::Float32; break;
    case napi_float64_array: src = pn::DType::Float64; break;
    case napi_bigint64_array: src = pn::DType::Int64; break;
    case napi_uint16_array:
      return syncCall(env, [&] {
        return wrapTensor(env, pn::fromHostUint16(static_cast<const uint16_t*>(data), bytes / 2, shape, dst, device));
      });
    default: throwType(env, "Unsupported TypedArray for data (Uint32Array and BigUint64Array have no LibTorch dtype)");
  }
  return syncCall(env, [&] { return wrapTensor(env, pn::fromHost(data, bytes, src, shape, dst, device)); });
}

Napi::Value Filled(const Napi::CallbackInfo& info) {
  const std::string kind = argString(info, 0, "fill");
  pn::Fill fill;
  if (kind == "zeros") fill = pn::Fill::Zeros;
  else if (kind == "ones") fill = pn::Fill::Ones;
  else if (kind == "rand") fill = pn::Fill::Rand;
  else if (kind == "randn") fill = pn::Fill::Randn;
  else throwType(info.Env(), "Unknown fill '" + kind + "'");
  auto shape = argIntArray(info, 1, "shape");
  const pn::DType dtype = argDType(info, 2, "dtype");
  const std::string device = argString(info, 3, "device");
  return Task<pn::Tensor>::Run(info.Env(), "pneumo.filled", [=] { return pn::filled(fill, shape, dtype, device); }, tensorResult);
}

Napi::Value Binary(const Napi::CallbackInfo& info) {
  const std::string name = argString(info, 0, "op");
  pn::BinaryOp op;
  if (name == "add") op = pn::BinaryOp::Add;
  else if (name == "sub") op = pn::BinaryOp::Sub;
  else if (name == "mul") op = pn::BinaryOp::Mul;
  else if (name == "div") op = pn::BinaryOp::Div;
  else if (name == "matmul") op = pn::BinaryOp::Matmul;
  else throwType(info.Env(), "Unknown binary op '" + name + "'");
  pn::Tensor a = NativeTensor::unwrapArg(info, 1, "a");
  pn::Tensor b = NativeTensor::unwrapArg(info, 2, "b");
  return Task<pn::Tensor>::Run(info.Env(), "pneumo.binary", [=] { return pn::binary(op, a, b); }, tensorResult);
}

Napi::Value Reduce(const Napi::CallbackInfo& info) {
  const std::string name = argString(info, 0, "op");
  pn::ReduceOp op;
  if (name == "sum") op = pn::ReduceOp::Sum;
  else if (name == "mean") op = pn::ReduceOp::Mean;
  else if (name == "max") op = pn::ReduceOp::Max;
  else if (name == "min") op = pn::ReduceOp::Min;
  else throwType(info.Env(), "Unknown reduce op '" + name + "'");
  pn::Tensor a = NativeTensor::unwrapArg(info, 1, "a");
  auto dims = argIntArray(info, 2, "dims");
  const bool keepDim = info.Length() > 3 && info[3].ToBoolean().Value();
  return Task<pn::Tensor>::Run(info.Env(), "pneumo.reduce", [=] { return pn::reduce(op, a, dims, keepDim); }, tensorResult);
}

Napi::Value Reshape(const Napi::CallbackInfo& info) {
  const pn::Tensor& a = NativeTensor::unwrapArg(info, 0, "a");
  auto shape = argIntArray(info, 1, "shape");
  return syncCall(info.Env(), [&] { return wrapTensor(info.Env(), pn::reshape(a, shape)); });
}

Napi::Value Clone(const Napi::CallbackInfo& info) {
  pn::Tensor a = NativeTensor::unwrapArg(info, 0, "a");
  return Task<pn::Tensor>::Run(info.Env(), "pneumo.clone", [=] { return pn::clone(a); }, tensorResult);
}

Napi::Value NormalizeU8(const Napi::CallbackInfo& info) {
  pn::Tensor a = NativeTensor::unwrapArg(info, 0, "images");
  const float mean = static_cast<float>(argNumber(info, 1, "mean"));
  const float std = static_cast<float>(argNumber(info, 2, "std"));
  return Task<pn::Tensor>::Run(info.Env(), "pneumo.normalizeU8", [=] { return pn::normalizeU8(a, mean, std); }, tensorResult);
}

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

// ---- augmentation ----------------------------------------------------------------------------
// augmentBatch(images, masks | null, plan: Float64Array, options) -> Promise<{ images, masks? }>.
// The plan is copied before the task starts; see native/augment/augment_api.h.

std::vector<double> argDoubles(const Napi::Value& value, const char* name) {
  if (!value.IsArray()) throwType(value.Env(), std::string("Expected an array of numbers for ") + name);
  const auto array = value.As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t k = 0; k < array.Length(); ++k) {
    const Napi::Value v = array.Get(k);
    if (!v.IsNumber()) throwType(value.Env(), std::string("Expected an array of numbers for ") + name);
    out.push_back(v.As<Napi::Number>().DoubleValue());
  }
  return out;
}

Napi::Value AugmentBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const pn::Tensor images = NativeTensor::unwrapArg(info, 0, "images");
  pn::Tensor masks;
  if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined()) masks = NativeTensor::unwrapArg(info, 1, "masks");
  if (info.Length() <= 2 || !info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throwType(env, "Expected a Float64Array for plan");
  }
  const auto planArray = info[2].As<Napi::Float64Array>();
  std::vector<double> plan(planArray.Data(), planArray.Data() + planArray.ElementLength());
  if (info.Length() <= 3 || !info[3].IsObject()) throwType(env, "Expected an object for options");
  const auto o = info[3].As<Napi::Object>();
  pn::AugmentOptions options;
  options.maskBilinear = o.Get("maskBilinear").ToBoolean().Value();
  options.atenPath = o.Get("atenPath").ToBoolean().Value();  // ---- datapath: the device path on CPU tensors (tests) ----
  options.normalize = o.Get("normalize").ToBoolean().Value();
  if (options.normalize) {
    options.maxPixelValue = o.Get("maxPixelValue").ToNumber().DoubleValue();
    options.mean = argDoubles(o.Get("mean"), "options.mean");
    options.std = argDoubles(o.Get("std"), "options.std");
  }
  const Napi::Value channels = o.Get("channels");
  options.channels = channels.IsNumber() ? static_cast<int64_t>(channels.As<Napi::Number>().DoubleValue()) : 1;
  return Task<pn::AugmentResult>::Run(
      env, "pneumo.augmentBatch", [images, masks, plan, options] { return pn::augmentBatch(images, masks, plan, options); },
      [](Napi::Env e, pn::AugmentResult& r) -> Napi::Value {
        auto out = Napi::Object::New(e);
        out.Set("images", wrapTensor(e, std::move(r.images)));
        if (r.masks.defined()) out.Set("masks", wrapTensor(e, std::move(r.masks)));
        return out;
      }, RunOn::Pool);
}

void RegisterAugmentation(Napi::Env env, Napi::Object exports) {
  exports.Set("augmentBatch", Napi::Function::New(env, AugmentBatch, "augmentBatch"));
}

// ---- end augmentation ------------------------------------------------------------------------

// ---- data ------------------------------------------------------------------------------------

pn::data::BatchOptions batchOptionsArg(const Napi::CallbackInfo& info, size_t first) {
  pn::data::BatchOptions options;
  options.size = static_cast<int>(argInteger(info, first, "size"));
  options.normalize = info.Length() > first + 1 && info[first + 1].ToBoolean().Value();
  if (options.normalize) {
    options.mean = static_cast<float>(argNumber(info, first + 2, "mean"));
    options.std = static_cast<float>(argNumber(info, first + 3, "std"));
  }
  // ---- datapath: a number here is a flag set (1: accept damaged JPEG, 2: threshold masks) ----
  if (info.Length() > first + 4 && info[first + 4].IsNumber()) {
    const int64_t flags = info[first + 4].As<Napi::Number>().Int64Value();
    options.acceptDamagedJpeg = (flags & 1) != 0;
    options.threshold = (flags & 2) != 0;
    return options;
  }
  options.acceptDamagedJpeg = info.Length() > first + 4 && info[first + 4].ToBoolean().Value();
  return options;
}

/**
 * Image sources from info[i], an array of { data: Uint8Array, jpeg: boolean, width?, height? }.
 * The source buffers are held by the persistent references in `keep` until the task settles.
 */
std::vector<pn::data::ImageSource> imageSourcesArg(const Napi::CallbackInfo& info, size_t i,
                                                   std::vector<Napi::ObjectReference>& keep) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsArray()) throwType(env, "Expected an array of image sources for sources");
  const auto list = info[i].As<Napi::Array>();
  std::vector<pn::data::ImageSource> sources;
  for (uint32_t k = 0; k < list.Length(); ++k) {
    const Napi::Value item = list.Get(k);
    if (!item.IsObject()) throwType(env, "Expected an object for sources[" + std::to_string(k) + "]");
    const auto object = item.As<Napi::Object>();
    const Napi::Value data = object.Get("data");
    if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throwType(env, "Expected a Uint8Array for sources[" + std::to_string(k) + "].data");
    }
    const auto bytes = data.As<Napi::Uint8Array>();
    pn::data::ImageSource src;
    src.data = bytes.Data();
    src.size = bytes.ByteLength();
    src.isJpeg = object.Get("jpeg").ToBoolean().Value();
    if (!src.isJpeg) {
      src.width = object.Get("width").ToNumber().Int32Value();
      src.height = object.Get("height").ToNumber().Int32Value();
    }
    sources.push_back(src);
    keep.push_back(Napi::Persistent(static_cast<Napi::Object>(bytes)));
  }
  return sources;
}

/** decodeImageBatch(sources, size, normalize, mean, std, acceptDamagedJpeg): resolves with a [B,1,size,size] tensor. */
Napi::Value DecodeImageBatch(const Napi::CallbackInfo& info) {
  auto keep = std::make_shared<std::vector<Napi::ObjectReference>>();
  const std::vector<pn::data::ImageSource> sources = imageSourcesArg(info, 0, *keep);
  const pn::data::BatchOptions options = batchOptionsArg(info, 1);
  return Task<pn::Tensor>::Run(
      info.Env(), "pneumo.decodeImageBatch", [sources, options] { return pn::data::decodeImageBatch(sources, options); },
      [keep](Napi::Env e, pn::Tensor& t) -> Napi::Value { return wrapTensor(e, std::move(t)); }, RunOn::Pool);
}

/** decodeImageBatchInto(into, rows, sources, size, normalize, mean, std, acceptDamagedJpeg): fills rows of `into`. */
Napi::Value DecodeImageBatchInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const pn::Tensor into = NativeTensor::unwrapArg(info, 0, "into");
  if (info.Length() < 2 || !info[1].IsArray()) throwType(env, "Expected an array of row indices for rows");
  std::vector<int64_t> rows;
  const auto rowList = info[1].As<Napi::Array>();
  for (uint32_t k = 0; k < rowList.Length(); ++k) rows.push_back(rowList.Get(k).ToNumber().Int64Value());
  auto keep = std::make_shared<std::vector<Napi::ObjectReference>>();
  const std::vector<pn::data::ImageSource> sources = imageSourcesArg(info, 2, *keep);
  const pn::data::BatchOptions options = batchOptionsArg(info, 3);
  return Task<int>::Run(
      env, "pneumo.decodeImageBatchInto",
      [into, rows, sources, options] {
        pn::data::decodeImageBatchInto(sources, rows, into, options);
        return 0;
      },
      [keep](Napi::Env e, int&) -> Napi::Value { return e.Undefined(); }, RunOn::Pool);
}

/**
 * readImageFiles(paths, size, normalize, mean, std, acceptDamagedJpeg, into?): resolves with
 * { images (none with into), fallback }.
 */
Napi::Value ReadImageFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throwType(env, "Expected an array of file paths for paths");
  const auto list = info[0].As<Napi::Array>();
  std::vector<std::string> paths;
  for (uint32_t k = 0; k < list.Length(); ++k) {
    const Napi::Value item = list.Get(k);
    if (!item.IsString()) throwType(env, "Expected a string for paths[" + std::to_string(k) + "]");
    paths.push_back(item.As<Napi::String>().Utf8Value());
  }
  const pn::data::BatchOptions options = batchOptionsArg(info, 1);
  std::optional<pn::Tensor> into;
  if (info.Length() > 6 && !info[6].IsUndefined() && !info[6].IsNull()) into = NativeTensor::unwrapArg(info, 6, "into");
  return Task<pn::data::FileBatch>::Run(
      env, "pneumo.readImageFiles", [paths, options, into] { return pn::data::readImageFiles(paths, options, into ? &*into : nullptr); },
      [](Napi::Env e, pn::data::FileBatch& r) -> Napi::Value {
        auto out = Napi::Object::New(e);
        if (r.images.defined()) out.Set("images", wrapTensor(e, std::move(r.images)));  // not when reading into a batch
        auto fallback = Napi::Array::New(e, r.fallback.size());
        for (size_t k = 0; k < r.fallback.size(); ++k) fallback.Set(static_cast<uint32_t>(k), Napi::Number::New(e, static_cast<double>(r.fallback[k])));
        out.Set("fallback", fallback);
        return out;
      }, RunOn::Pool);
}

// ---- end data --------------------------------------------------------------------------------

// ---- losses and optimizers -------------------------------------------------------------------
// Losses (native/losses/loss_api.h): one forward + backward for JS. Optimizers
// (native/optim/optim_api.h): a handle (a type-tagged External) over tensors made trainable with
// makeParameter; the trainer itself owns optimizers natively through optim/optim.h.

double lossNumberOption(const Napi::Object& o, const char* key, double fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throwType(o.Env(), std::string("Expected a number for options.") + key);
  return v.As<Napi::Number>().DoubleValue();
}

bool lossBoolOption(const Napi::Object& o, const char* key, bool fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) throwType(o.Env(), std::string("Expected a boolean for options.") + key);
  return v.As<Napi::Boolean>().Value();
}

Napi::Object optionsArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined()) return Napi::Object::New(info.Env());
  if (!info[i].IsObject()) throwType(info.Env(), "Expected an object for options");
  return info[i].As<Napi::Object>();
}

/** lossForwardBackward(kind, logits, target, options) -> Promise<{ loss, grad }>. */
Napi::Value LossForwardBackward(const Napi::CallbackInfo& info) {
  const std::string name = argString(info, 0, "kind");
  pn::LossKind kind;
  if (!pn::parseLossKind(name, &kind)) throwType(info.Env(), "Unknown loss '" + name + "'");
  pn::Tensor logits = NativeTensor::unwrapArg(info, 1, "logits");
  pn::Tensor target = NativeTensor::unwrapArg(info, 2, "target");
  const Napi::Object o = optionsArg(info, 3);
  pn::LossOptions options;
  options.bceWeight = lossNumberOption(o, "bceWeight", options.bceWeight);
  options.diceWeight = lossNumberOption(o, "diceWeight", options.diceWeight);
  options.focalWeight = lossNumberOption(o, "focalWeight", options.focalWeight);
  options.perImageDice = lossBoolOption(o, "perImageDice", options.perImageDice);
  options.smooth = lossNumberOption(o, "smooth", options.smooth);
  options.alpha = lossNumberOption(o, "alpha", options.alpha);
  options.positiveMargin = lossNumberOption(o, "positiveMargin", options.positiveMargin);
  options.negativeMargin = lossNumberOption(o, "negativeMargin", options.negativeMargin);
  options.symmetric = lossBoolOption(o, "symmetric", options.symmetric);
  return Task<pn::LossResult>::Run(
      info.Env(), "pneumo.lossForwardBackward", [kind, logits, target, options] { return pn::lossForwardBackward(kind, logits, target, options); },
      [](Napi::Env env, pn::LossResult& r) -> Napi::Value {
        auto out = Napi::Object::New(env);
        out.Set("loss", r.loss);
        out.Set("grad", wrapTensor(env, std::move(r.grad)));
        return out;
      });
}

const napi_type_tag kOptimizerTag = {0x706e6f7074696d69ULL, 0x7a65722d68616e64ULL};

pn::Optimizer optimizerArg(const Napi::CallbackInfo& info, size_t i) {
  bool tagged = false;
  if (info.Length() > i && info[i].IsExternal()) napi_check_object_type_tag(info.Env(), info[i], &kOptimizerTag, &tagged);
  if (!tagged) throwType(info.Env(), "Expected an optimizer handle for optimizer");
  const pn::Optimizer* o = info[i].As<Napi::External<pn::Optimizer>>().Data();
  if (!o->defined()) throw Napi::Error::New(info.Env(), "Optimizer has been disposed");
  return *o;
}

/** [[name, NativeTensor], ...] -> named tensors (optimizers, state dicts, checkpoints, the engine). */
std::vector<std::pair<std::string, pn::Tensor>> namedTensorsArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const std::string expected = std::string("Expected an array of [name, Tensor] pairs for ") + name;
  if (info.Length() <= i || !info[i].IsArray()) throwType(info.Env(), expected);
  const auto a = info[i].As<Napi::Array>();
  std::vector<std::pair<std::string, pn::Tensor>> out;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    const Napi::Value pair = a.Get(k);
    if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2 || !pair.As<Napi::Array>().Get(0u).IsString()) throwType(info.Env(), expected);
    const Napi::Value t = pair.As<Napi::Array>().Get(1u);
    if (!t.IsObject() || !t.As<Napi::Object>().InstanceOf(NativeTensor::constructorOf(info.Env()))) throwType(info.Env(), expected);
    out.emplace_back(pair.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(),
                     Napi::ObjectWrap<NativeTensor>::Unwrap(t.As<Napi::Object>())->get(info.Env()));
  }
  return out;
}

Napi::Array namedTensorsResult(Napi::Env env, std::vector<std::pair<std::string, pn::Tensor>>& tensors) {
  auto out = Napi::Array::New(env, tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k) {
    auto pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::String::New(env, tensors[k].first));
    pair.Set(1u, wrapTensor(env, std::move(tensors[k].second)));
    out.Set(static_cast<uint32_t>(k), pair);
  }
  return out;
}

/** An optimizer spec object ({ algorithm, lr, ..., lrRules }) -> pn::OptimizerSpec. */
pn::OptimizerSpec optimizerSpecArg(Napi::Env env, const Napi::Object& o) {
  pn::OptimizerSpec spec;
  const Napi::Value algorithm = o.Get("algorithm");
  if (!algorithm.IsString()) throwType(env, "Expected a string for spec.algorithm");
  spec.algorithm = algorithm.As<Napi::String>().Utf8Value();
  spec.lr = lossNumberOption(o, "lr", spec.lr);
  spec.weightDecay = lossNumberOption(o, "weightDecay", spec.weightDecay);
  spec.decayBiasesAndNorms = lossBoolOption(o, "decayBiasesAndNorms", spec.decayBiasesAndNorms);
  spec.beta1 = lossNumberOption(o, "beta1", spec.beta1);
  spec.beta2 = lossNumberOption(o, "beta2", spec.beta2);
  spec.eps = lossNumberOption(o, "eps", spec.eps);
  spec.amsgrad = lossBoolOption(o, "amsgrad", spec.amsgrad);
  spec.momentum = lossNumberOption(o, "momentum", spec.momentum);
  spec.dampening = lossNumberOption(o, "dampening", spec.dampening);
  spec.nesterov = lossBoolOption(o, "nesterov", spec.nesterov);
  const Napi::Value rules = o.Get("lrRules");
  if (!rules.IsUndefined() && !rules.IsNull()) {
    if (!rules.IsArray()) throwType(env, "Expected an array of [prefix, lr] pairs for spec.lrRules");
    const auto a = rules.As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); ++k) {
      const Napi::Value rule = a.Get(k);
      if (!rule.IsArray() || rule.As<Napi::Array>().Length() != 2 || !rule.As<Napi::Array>().Get(0u).IsString() ||
          !rule.As<Napi::Array>().Get(1u).IsNumber()) {
        throwType(env, "Expected an array of [prefix, lr] pairs for spec.lrRules");
      }
      spec.lrRules.emplace_back(rule.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(),
                                rule.As<Napi::Array>().Get(1u).As<Napi::Number>().DoubleValue());
    }
  }
  return spec;
}

/** createOptimizer([[name, NativeTensor], ...], spec) -> handle (sync: builds groups only). */
Napi::Value CreateOptimizer(const Napi::CallbackInfo& info) {
  auto parameters = namedTensorsArg(info, 0, "parameters");
  const pn::OptimizerSpec spec = optimizerSpecArg(info.Env(), optionsArg(info, 1));
  pn::Optimizer optimizer = syncCall(info.Env(), [&] { return pn::createOptimizer(parameters, spec); });
  auto handle = Napi::External<pn::Optimizer>::New(info.Env(), new pn::Optimizer(std::move(optimizer)),
                                                   [](Napi::Env, pn::Optimizer* o) { delete o; });
  napi_type_tag_object(info.Env(), handle, &kOptimizerTag);
  return handle;
}

Napi::Value OptimizerDispose(const Napi::CallbackInfo& info) {
  bool tagged = false;
  if (info.Length() > 0 && info[0].IsExternal()) napi_check_object_type_tag(info.Env(), info[0], &kOptimizerTag, &tagged);
  if (!tagged) throwType(info.Env(), "Expected an optimizer handle for optimizer");
  *info[0].As<Napi::External<pn::Optimizer>>().Data() = pn::Optimizer();
  return info.Env().Undefined();
}

Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
  pn::Optimizer o = optimizerArg(info, 0);
  return Task<int>::Run(
      info.Env(), "pneumo.optimizerStep",
      [o] {
        pn::optimizerStep(o);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value OptimizerZeroGrad(const Napi::CallbackInfo& info) {
  pn::Optimizer o = optimizerArg(info, 0);
  syncCall(info.Env(), [&] {
    pn::optimizerZeroGrad(o);
    return 0;
  });
  return info.Env().Undefined();
}

Napi::Value OptimizerGradNorm(const Napi::CallbackInfo& info) {
  pn::Optimizer o = optimizerArg(info, 0);
  return Task<double>::Run(info.Env(), "pneumo.optimizerGradNorm", [o] { return pn::optimizerGradNorm(o); },
                           [](Napi::Env env, double& v) -> Napi::Value { return Napi::Number::New(env, v); });
}

Napi::Value OptimizerClipGradNorm(const Napi::CallbackInfo& info) {
  pn::Optimizer o = optimizerArg(info, 0);
  const double maxNorm = argNumber(info, 1, "maxNorm");
  return Task<double>::Run(info.Env(), "pneumo.optimizerClipGradNorm", [o, maxNorm] { return pn::optimizerClipGradNorm(o, maxNorm); },
                           [](Napi::Env env, double& v) -> Napi::Value { return Napi::Number::New(env, v); });
}

Napi::Value OptimizerGroups(const Napi::CallbackInfo& info) {
  pn::Optimizer o = optimizerArg(info, 0);
  const auto groups = syncCall(info.Env(), [&] { return pn::optimizerGroups(o); });
  auto out = Napi::Array::New(info.Env(), groups.size());
  for (size_t k = 0; k < groups.size(); ++k) {
    auto g = Napi::Object::New(info.Env());
    g.Set("name", groups[k].name);
    g.Set("lr", groups[k].lr);
    g.Set("initialLr", groups[k].initialLr);
    g.Set("weightDecay", groups[k].weightDecay);
    auto names = Napi::Array::New(info.Env(), groups[k].parameters.size());
    for (size_t p = 0; p < groups[k].parameters.size(); ++p) names.Set(static_cast<uint32_t>(p), groups[k].parameters[p]);
    g.Set("parameters", names);
    out.Set(static_cast<uint32_t>(k), g);
  }
  return out;
}

Napi::Value OptimizerSetLr(const Napi::CallbackInfo& info) {
  pn::Optimizer o = optimizerArg(info, 0);
  const int64_t group = argInteger(info, 1, "group");
  const double lr = argNumber(info, 2, "lr");
  syncCall(info.Env(), [&] {
    pn::optimizerSetLr(o, group, lr);
    return 0;
  });
  return info.Env().Undefined();
}

Napi::Value OptimizerScaleLr(const Napi::CallbackInfo& info) {
  pn::Optimizer o = optimizerArg(info, 0);
  const double factor = argNumber(info, 1, "factor");
  syncCall(info.Env(), [&] {
    pn::optimizerScaleLr(o, factor);
    return 0;
  });
  return info.Env().Undefined();
}

Napi::Value OptimizerStateDict(const Napi::CallbackInfo& info) {
  pn::Optimizer o = optimizerArg(info, 0);
  return Task<std::vector<std::pair<std::string, pn::Tensor>>>::Run(
      info.Env(), "pneumo.optimizerStateDict", [o] { return pn::optimizerStateDict(o); },
      [](Napi::Env env, std::vector<std::pair<std::string, pn::Tensor>>& r) -> Napi::Value { return namedTensorsResult(env, r); }, RunOn::Pool);
}

Napi::Value OptimizerLoadStateDict(const Napi::CallbackInfo& info) {
  pn::Optimizer o = optimizerArg(info, 0);
  auto state = namedTensorsArg(info, 1, "state");
  return Task<int>::Run(
      info.Env(), "pneumo.optimizerLoadStateDict",
      [o, state] {
        pn::optimizerLoadStateDict(o, state);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
}

Napi::Value MakeParameter(const Napi::CallbackInfo& info) {
  const pn::Tensor& value = NativeTensor::unwrapArg(info, 0, "value");
  return syncCall(info.Env(), [&] { return wrapTensor(info.Env(), pn::makeParameter(value)); });
}

Napi::Value SetGradient(const Napi::CallbackInfo& info) {
  const pn::Tensor& parameter = NativeTensor::unwrapArg(info, 0, "parameter");
  const pn::Tensor& gradient = NativeTensor::unwrapArg(info, 1, "gradient");
  const bool accumulate = info.Length() > 2 && info[2].ToBoolean().Value();
  syncCall(info.Env(), [&] {
    pn::setGradient(parameter, gradient, accumulate);
    return 0;
  });
  return info.Env().Undefined();
}

Napi::Value GradientOf(const Napi::CallbackInfo& info) {
  const pn::Tensor& parameter = NativeTensor::unwrapArg(info, 0, "parameter");
  pn::Tensor grad = syncCall(info.Env(), [&] { return pn::gradientOf(parameter); });
  if (!grad.defined()) return info.Env().Undefined();
  return wrapTensor(info.Env(), std::move(grad));
}

void RegisterLossesAndOptimizers(Napi::Env env, Napi::Object exports) {
  exports.Set("lossForwardBackward", Napi::Function::New(env, LossForwardBackward, "lossForwardBackward"));
  exports.Set("createOptimizer", Napi::Function::New(env, CreateOptimizer, "createOptimizer"));
  exports.Set("optimizerDispose", Napi::Function::New(env, OptimizerDispose, "optimizerDispose"));
  exports.Set("optimizerStep", Napi::Function::New(env, OptimizerStep, "optimizerStep"));
  exports.Set("optimizerZeroGrad", Napi::Function::New(env, OptimizerZeroGrad, "optimizerZeroGrad"));
  exports.Set("optimizerGradNorm", Napi::Function::New(env, OptimizerGradNorm, "optimizerGradNorm"));
  exports.Set("optimizerClipGradNorm", Napi::Function::New(env, OptimizerClipGradNorm, "optimizerClipGradNorm"));
  exports.Set("optimizerGroups", Napi::Function::New(env, OptimizerGroups, "optimizerGroups"));
  exports.Set("optimizerSetLr", Napi::Function::New(env, OptimizerSetLr, "optimizerSetLr"));
  exports.Set("optimizerScaleLr", Napi::Function::New(env, OptimizerScaleLr, "optimizerScaleLr"));
  exports.Set("optimizerStateDict", Napi::Function::New(env, OptimizerStateDict, "optimizerStateDict"));
  exports.Set("optimizerLoadStateDict", Napi::Function::New(env, OptimizerLoadStateDict, "optimizerLoadStateDict"));
  exports.Set("makeParameter", Napi::Function::New(env, MakeParameter, "makeParameter"));
  exports.Set("setGradient", Napi::Function::New(env, SetGradient, "setGradient"));
  exports.Set("gradientOf", Napi::Function::New(env, GradientOf, "gradientOf"));
}

// ---- end losses and optimizers ---------------------------------------------------------------

// ---- models ----------------------------------------------------------------------------------
// NativeModel wraps a pn::Model (native/models/model_api.h). Everything that runs the network,
// builds it or touches files is a Task; the model serialises its own work (one mutex), so JS may
// queue several calls on one model.

std::string optString(const Napi::Object& o, const char* key, const std::string& fallback = "") {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) throwType(o.Env(), std::string("Expected a string for spec.") + key);
  return v.As<Napi::String>().Utf8Value();
}

int64_t optInteger(const Napi::Object& o, const char* key, int64_t fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throwType(o.Env(), std::string("Expected an integer for spec.") + key);
  return static_cast<int64_t>(v.As<Napi::Number>().DoubleValue());
}

bool optBool(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull() && v.ToBoolean().Value();
}

pn::ModelSpec argModelSpec(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsObject()) throwType(info.Env(), "Expected an object for spec");
  const auto o = info[i].As<Napi::Object>();
  pn::ModelSpec spec;
  spec.architecture = optString(o, "architecture");
  spec.encoder = optString(o, "encoder");
  spec.encoderPath = optString(o, "encoderPath");
  const Napi::Value widths = o.Get("decoderChannels");
  if (widths.IsArray()) {
    const auto a = widths.As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); ++k) spec.decoderChannels.push_back(static_cast<int64_t>(a.Get(k).ToNumber().DoubleValue()));
  }
  spec.classes = optInteger(o, "classes", 1);
  spec.inChannels = optInteger(o, "inChannels", 3);
  spec.classificationHead = optBool(o, "classificationHead");
  spec.channelsLast = optBool(o, "channelsLast");
  spec.precision = optString(o, "precision", "fp32");
  spec.json = optString(o, "json", "{}");
  return spec;
}

Napi::Array stringsToJs(Napi::Env env, const std::vector<std::string>& values) {
  auto out = Napi::Array::New(env, values.size());
  for (size_t k = 0; k < values.size(); ++k) out.Set(static_cast<uint32_t>(k), Napi::String::New(env, values[k]));
  return out;
}

Napi::Object wrapModel(Napi::Env env, pn::Model model);

/** A JS object owning one pn::Model; freed by dispose() or by its finalizer. */
class NativeModel final : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {
                           InstanceAccessor<&NativeModel::Disposed>("disposed"),
                           InstanceAccessor<&NativeModel::Training>("training"),
                           InstanceAccessor<&NativeModel::EncoderFrozen>("encoderFrozen"),
                           InstanceAccessor<&NativeModel::Device>("device"),
                           InstanceAccessor<&NativeModel::SpecJson>("specJson"),
                           InstanceAccessor<&NativeModel::EncoderInfo>("encoderInfo"),
                           InstanceMethod<&NativeModel::Dispose>("dispose"),
                           InstanceMethod<&NativeModel::Forward>("forward"),
                           InstanceMethod<&NativeModel::Encode>("encode"),
                           InstanceMethod<&NativeModel::Train>("train"),
                           InstanceMethod<&NativeModel::FreezeEncoder>("freezeEncoder"),
                           InstanceMethod<&NativeModel::SetPrecision>("setPrecision"),
                           InstanceMethod<&NativeModel::ParameterCounts>("parameterCounts"),
                           InstanceMethod<&NativeModel::To>("to"),
                           InstanceMethod<&NativeModel::StateDict>("stateDict"),
                           InstanceMethod<&NativeModel::LoadStateDict>("loadStateDict"),
                           InstanceMethod<&NativeModel::SaveCheckpoint>("saveCheckpoint"),
                           InstanceMethod<&NativeModel::ExportTorchScript>("exportTorchScript"),
                           InstanceMethod<&NativeModel::GradientStep>("gradientStep"),
                           InstanceMethod<&NativeModel::SetInferenceOptimization>("setInferenceOptimization"),
                       });
  }

  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throwType(info.Env(), "NativeModel cannot be constructed from JS: use createModel or loadModel");
    }
    model_ = *info[0].As<Napi::External<pn::Model>>().Data();
  }

  void Finalize(Napi::Env) override { model_ = pn::Model(); }

  const pn::Model& get(Napi::Env env) const {
    if (!model_.defined()) throw Napi::Error::New(env, "Model has been disposed");
    return model_;
  }

  static Napi::Function constructorOf(Napi::Env env) { return env.GetInstanceData<AddonData>()->modelConstructor.Value(); }

 private:
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !model_.defined()); }
  Napi::Value Training(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), syncCall(info.Env(), [&] { return pn::modelIsTraining(get(info.Env())); }));
  }
  Napi::Value EncoderFrozen(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), syncCall(info.Env(), [&] { return pn::modelEncoderFrozen(get(info.Env())); }));
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), syncCall(info.Env(), [&] { return pn::modelDevice(get(info.Env())); }));
  }
  Napi::Value SpecJson(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), syncCall(info.Env(), [&] { return pn::modelSpecJson(get(info.Env())); }));
  }
  Napi::Value EncoderInfo(const Napi::CallbackInfo& info) {
    const pn::EncoderInfo e = syncCall(info.Env(), [&] { return pn::modelEncoderInfo(get(info.Env())); });
    auto o = Napi::Object::New(info.Env());
    o.Set("channels", toJsArray(info.Env(), e.channels));
    o.Set("strides", toJsArray(info.Env(), e.strides));
    o.Set("requiredDivisor", static_cast<double>(e.requiredDivisor));
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_ = pn::Model();
    return info.Env().Undefined();
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    pn::Tensor x = NativeTensor::unwrapArg(info, 0, "input");
    return Task<pn::ModelOutput>::Run(info.Env(), "pneumo.modelForward", [m, x] { return pn::modelForward(m, x); },
                                      [](Napi::Env env, pn::ModelOutput& r) -> Napi::Value {
                                        auto o = Napi::Object::New(env);
                                        o.Set("mask", wrapTensor(env, std::move(r.mask)));
                                        if (r.label.defined()) o.Set("label", wrapTensor(env, std::move(r.label)));
                                        return o;
                                      });
  }

  Napi::Value Encode(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    pn::Tensor x = NativeTensor::unwrapArg(info, 0, "input");
    return Task<std::vector<pn::Tensor>>::Run(info.Env(), "pneumo.modelEncode", [m, x] { return pn::modelEncode(m, x); },
                                              [](Napi::Env env, std::vector<pn::Tensor>& r) -> Napi::Value {
                                                auto a = Napi::Array::New(env, r.size());
                                                for (size_t k = 0; k < r.size(); ++k) a.Set(static_cast<uint32_t>(k), wrapTensor(env, std::move(r[k])));
                                                return a;
                                              });
  }

  Napi::Value Train(const Napi::CallbackInfo& info) {
    const bool on = info.Length() == 0 || info[0].ToBoolean().Value();
    syncCall(info.Env(), [&] {
      pn::modelSetTraining(get(info.Env()), on);
      return 0;
    });
    return info.Env().Undefined();
  }

  Napi::Value FreezeEncoder(const Napi::CallbackInfo& info) {
    const bool on = info.Length() == 0 || info[0].ToBoolean().Value();
    syncCall(info.Env(), [&] {
      pn::modelFreezeEncoder(get(info.Env()), on);
      return 0;
    });
    return info.Env().Undefined();
  }

  Napi::Value SetPrecision(const Napi::CallbackInfo& info) {
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
      throwType(info.Env(), "Expected (precision: string, specJson: string) for setPrecision");
    }
    const std::string precision = info[0].As<Napi::String>().Utf8Value();
    const std::string json = info[1].As<Napi::String>().Utf8Value();
    syncCall(info.Env(), [&] {
      pn::modelSetPrecision(get(info.Env()), precision, json);
      return 0;
    });
    return info.Env().Undefined();
  }

  Napi::Value ParameterCounts(const Napi::CallbackInfo& info) {
    const pn::ParameterCounts c = syncCall(info.Env(), [&] { return pn::modelParameterCounts(get(info.Env())); });
    auto o = Napi::Object::New(info.Env());
    o.Set("total", static_cast<double>(c.total));
    o.Set("encoder", static_cast<double>(c.encoder));
    o.Set("decoder", static_cast<double>(c.decoder));
    o.Set("trainable", static_cast<double>(c.trainable));
    return o;
  }

  Napi::Value To(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    const std::string device = argString(info, 0, "device");
    return Task<int>::Run(
        info.Env(), "pneumo.modelTo",
        [m, device] {
          pn::modelTo(m, device);
          return 0;
        },
        [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
  }

  Napi::Value StateDict(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    return Task<std::vector<std::pair<std::string, pn::Tensor>>>::Run(
        info.Env(), "pneumo.stateDict", [m] { return pn::modelStateDict(m); },
        [](Napi::Env env, std::vector<std::pair<std::string, pn::Tensor>>& r) -> Napi::Value { return namedTensorsResult(env, r); }, RunOn::Pool);
  }

  Napi::Value LoadStateDict(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    auto tensors = namedTensorsArg(info, 0, "tensors");
    const std::string prefix = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    const bool strict = info.Length() > 2 && info[2].ToBoolean().Value();
    return Task<pn::StateDictReport>::Run(
        info.Env(), "pneumo.loadStateDict", [m, tensors, prefix, strict] { return pn::modelLoadStateDict(m, tensors, prefix, strict); },
        [](Napi::Env env, pn::StateDictReport& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("loaded", static_cast<double>(r.loaded));
          o.Set("missing", stringsToJs(env, r.missing));
          o.Set("unexpected", stringsToJs(env, r.unexpected));
          return o;
        }, RunOn::Pool);
  }

  Napi::Value SaveCheckpoint(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    const std::string path = argString(info, 0, "path");
    pn::CheckpointExtras extras;
    extras.metadataJson = argString(info, 1, "metadataJson");
    if (info.Length() > 2 && !info[2].IsUndefined()) extras.optimizer = namedTensorsArg(info, 2, "optimizer");
    return Task<int>::Run(
        info.Env(), "pneumo.saveCheckpoint",
        [m, path, extras] {
          pn::saveCheckpoint(m, path, extras);
          return 0;
        },
        [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
  }

  Napi::Value ExportTorchScript(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    const std::string path = argString(info, 0, "path");
    return Task<int>::Run(
        info.Env(), "pneumo.exportTorchScript",
        [m, path] {
          pn::exportTorchScript(m, path);
          return 0;
        },
        [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
  }

  Napi::Value GradientStep(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    pn::Tensor x = NativeTensor::unwrapArg(info, 0, "input");
    const double lr = argNumber(info, 1, "lr");
    const bool statistics = info.Length() < 3 || info[2].ToBoolean().Value();
    return Task<pn::GradientReport>::Run(info.Env(), "pneumo.gradientStep",
                                         [m, x, lr, statistics] { return pn::modelGradientStep(m, x, lr, statistics); },
                                         [](Napi::Env env, pn::GradientReport& r) -> Napi::Value {
                                           auto o = Napi::Object::New(env);
                                           o.Set("loss", r.loss);
                                           o.Set("gradientNorm", r.gradientNorm);
                                           o.Set("finite", r.finite);
                                           o.Set("trainableTensors", static_cast<double>(r.trainableTensors));
                                           o.Set("tensorsWithGradient", static_cast<double>(r.tensorsWithGradient));
                                           o.Set("tensorsWithNonzeroGradient", static_cast<double>(r.tensorsWithNonzeroGradient));
                                           return o;
                                         });
  }

  Napi::Value SetInferenceOptimization(const Napi::CallbackInfo& info) {
    const bool on = info.Length() > 0 && info[0].ToBoolean().Value();
    syncCall(info.Env(), [&] {
      pn::modelSetInferenceOptimization(get(info.Env()), on);
      return 0;
    });
    return info.Env().Undefined();
  }

  pn::Model model_;
};

Napi::Object wrapModel(Napi::Env env, pn::Model model) {
  return NativeModel::constructorOf(env).New({Napi::External<pn::Model>::New(env, &model)});
}

/** createModel(spec, device) -> Promise<NativeModel>. */
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  const pn::ModelSpec spec = argModelSpec(info, 0);
  const std::string device = argString(info, 1, "device");
  return Task<pn::Model>::Run(info.Env(), "pneumo.createModel", [spec, device] { return pn::createModel(spec, device); },
                              [](Napi::Env env, pn::Model& m) -> Napi::Value { return wrapModel(env, std::move(m)); });
}

/** loadModel(path, device) -> Promise<{ model, kind, metadataJson, optimizer }>. */
Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  const std::string path = argString(info, 0, "path");
  const std::string device = argString(info, 1, "device");
  return Task<pn::LoadedCheckpoint>::Run(info.Env(), "pneumo.loadModel", [path, device] { return pn::loadCheckpoint(path, device); },
                                         [](Napi::Env env, pn::LoadedCheckpoint& r) -> Napi::Value {
                                           auto o = Napi::Object::New(env);
                                           o.Set("model", wrapModel(env, std::move(r.model)));
                                           o.Set("kind", r.kind);
                                           o.Set("metadataJson", r.extras.metadataJson);
                                           o.Set("optimizer", namedTensorsResult(env, r.extras.optimizer));
                                           return o;
                                         });
}

/** readStateDict(path) -> Promise<[name, NativeTensor][]> from a Python torch.save file. */
Napi::Value ReadStateDict(const Napi::CallbackInfo& info) {
  const std::string path = argString(info, 0, "path");
  return Task<std::vector<std::pair<std::string, pn::Tensor>>>::Run(
      info.Env(), "pneumo.readStateDict", [path] { return pn::readTorchStateDict(path); },
      [](Napi::Env env, std::vector<std::pair<std::string, pn::Tensor>>& r) -> Napi::Value { return namedTensorsResult(env, r); }, RunOn::Pool);
}

/** writeStateDict(path, [[name, NativeTensor], ...]) -> Promise<void> (torch.load reads it). */
Napi::Value WriteStateDict(const Napi::CallbackInfo& info) {
  const std::string path = argString(info, 0, "path");
  auto tensors = namedTensorsArg(info, 1, "tensors");
  return Task<int>::Run(
      info.Env(), "pneumo.writeStateDict",
      [path, tensors] {
        pn::writeTorchStateDict(path, tensors);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
}

/** readSafetensors(path, dataOffset, [{ name, dtype, shape, begin, end }]) -> Promise<[name, NativeTensor][]>. */
Napi::Value ReadSafetensors(const Napi::CallbackInfo& info) {
  const std::string path = argString(info, 0, "path");
  const auto offset = static_cast<uint64_t>(argInteger(info, 1, "dataOffset"));
  if (info.Length() <= 2 || !info[2].IsArray()) throwType(info.Env(), "Expected an array of entries for entries");
  const auto a = info[2].As<Napi::Array>();
  std::vector<pn::SafetensorsEntry> entries;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    if (!a.Get(k).IsObject()) throwType(info.Env(), "Expected an array of entries for entries");
    const auto e = a.Get(k).As<Napi::Object>();
    pn::SafetensorsEntry entry;
    entry.name = e.Get("name").ToString().Utf8Value();
    entry.dtype = e.Get("dtype").ToString().Utf8Value();
    const auto shape = e.Get("shape").As<Napi::Array>();
    for (uint32_t d = 0; d < shape.Length(); ++d) entry.shape.push_back(static_cast<int64_t>(shape.Get(d).ToNumber().DoubleValue()));
    entry.begin = static_cast<uint64_t>(e.Get("begin").ToNumber().DoubleValue());
    entry.end = static_cast<uint64_t>(e.Get("end").ToNumber().DoubleValue());
    if (e.Has("strides") && e.Get("strides").IsArray()) {
      const auto strides = e.Get("strides").As<Napi::Array>();
      for (uint32_t d = 0; d < strides.Length(); ++d) entry.strides.push_back(static_cast<int64_t>(strides.Get(d).ToNumber().DoubleValue()));
    }
    entries.push_back(std::move(entry));
  }
  return Task<std::vector<std::pair<std::string, pn::Tensor>>>::Run(
      info.Env(), "pneumo.readSafetensors", [path, offset, entries] { return pn::readSafetensors(path, offset, entries); },
      [](Napi::Env env, std::vector<std::pair<std::string, pn::Tensor>>& r) -> Napi::Value { return namedTensorsResult(env, r); }, RunOn::Pool);
}

void RegisterModels(Napi::Env env, Napi::Object exports, AddonData* data) {
  Napi::Function modelClass = NativeModel::Define(env);
  data->modelConstructor = Napi::Persistent(modelClass);
  exports.Set("NativeModel", modelClass);
  exports.Set("createModel", Napi::Function::New(env, CreateModel, "createModel"));
  exports.Set("loadModel", Napi::Function::New(env, LoadModel, "loadModel"));
  exports.Set("readStateDict", Napi::Function::New(env, ReadStateDict, "readStateDict"));
  exports.Set("writeStateDict", Napi::Function::New(env, WriteStateDict, "writeStateDict"));
  exports.Set("readSafetensors", Napi::Function::New(env, ReadSafetensors, "readSafetensors"));
}

// ---- end models --------------------------------------------------------------------------------

// ---- inference: threshold search ---------------------------------------------------------------
// summariseMaps(maps: Uint8Array | Float32Array, count, pixels, truth: Uint8Array | null,
//               thresholds: Float64Array | null, threads) -> Promise<{ levels, above, truthAbove?, truthArea? }>
// scoreTriplets(above, truthAbove, truthArea, count, levels, tops: Int32Array, areas: Float64Array,
//               bottoms: Int32Array, scale) -> Promise<Float64Array [T x 4]: mean, empty, nonEmpty, positives>
// See native/inference/thresholds_api.h. Input buffers are held by references until the task settles.

const uint8_t* optionalBytes(const Napi::CallbackInfo& info, size_t i, const char* name, size_t expected,
                             std::shared_ptr<std::vector<Napi::ObjectReference>>& keep) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throwType(info.Env(), std::string("Expected a Uint8Array or null for ") + name);
  }
  const auto a = info[i].As<Napi::Uint8Array>();
  if (a.ElementLength() != expected) throwType(info.Env(), std::string("Expected ") + std::to_string(expected) + " values for " + name);
  keep->push_back(Napi::Persistent(static_cast<Napi::Object>(a)));
  return a.Data();
}

template <typename T, napi_typedarray_type kType>
const T* typedArg(const Napi::CallbackInfo& info, size_t i, const char* name, const char* typeName, size_t expected,
                  std::shared_ptr<std::vector<Napi::ObjectReference>>& keep) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != kType) {
    throwType(info.Env(), std::string("Expected a ") + typeName + " for " + name);
  }
  const auto a = info[i].As<Napi::TypedArrayOf<T>>();
  if (a.ElementLength() != expected) throwType(info.Env(), std::string("Expected ") + std::to_string(expected) + " values for " + name);
  keep->push_back(Napi::Persistent(static_cast<Napi::Object>(a)));
  return a.Data();
}

Napi::Value SummariseMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t count = argInteger(info, 1, "count");
  const int64_t pixels = argInteger(info, 2, "pixels");
  if (count < 0 || pixels <= 0) throwType(env, "Expected a non-negative count and positive pixels");
  const int threads = static_cast<int>(argInteger(info, 5, "threads"));
  auto keep = std::make_shared<std::vector<Napi::ObjectReference>>();
  const size_t total = static_cast<size_t>(count * pixels);
  const uint8_t* truth = optionalBytes(info, 3, "truth", total, keep);
  if (info.Length() < 1 || !info[0].IsTypedArray()) throwType(env, "Expected a Uint8Array or Float32Array for maps");
  const napi_typedarray_type type = info[0].As<Napi::TypedArray>().TypedArrayType();
  std::function<pn::inference::MapSummaries()> work;
  if (type == napi_uint8_array) {
    const uint8_t* maps = typedArg<uint8_t, napi_uint8_array>(info, 0, "maps", "Uint8Array", total, keep);
    work = [=] { return pn::inference::summariseU8(maps, count, pixels, truth, threads); };
  } else if (type == napi_float32_array) {
    const float* maps = typedArg<float, napi_float32_array>(info, 0, "maps", "Float32Array", total, keep);
    if (info.Length() <= 4 || !info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      throwType(env, "Expected a Float64Array of thresholds for float32 maps");
    }
    const auto t = info[4].As<Napi::Float64Array>();
    std::vector<double> thresholds(t.Data(), t.Data() + t.ElementLength());
    work = [=] { return pn::inference::summariseF32(maps, count, pixels, truth, thresholds, threads); };
  } else {
    throwType(env, "Expected a Uint8Array or Float32Array for maps");
  }
  const bool hasTruth = truth != nullptr;
  return Task<pn::inference::MapSummaries>::Run(env, "pneumo.summariseMaps", work, [keep, hasTruth](Napi::Env e, pn::inference::MapSummaries& s) -> Napi::Value {
    auto copy = [&](const std::vector<int32_t>& v) {
      auto a = Napi::Int32Array::New(e, v.size());
      std::copy(v.begin(), v.end(), a.Data());
      return a;
    };
    auto o = Napi::Object::New(e);
    o.Set("levels", static_cast<double>(s.levels));
    o.Set("above", copy(s.above));
    if (hasTruth) {
      o.Set("truthAbove", copy(s.truthAbove));
      o.Set("truthArea", copy(s.truthArea));
    }
    return o;
  }, RunOn::Pool);
}

Napi::Value ScoreTriplets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t count = argInteger(info, 3, "count");
  const int64_t levels = argInteger(info, 4, "levels");
  if (count < 0 || levels <= 0) throwType(env, "Expected a non-negative count and positive levels");
  auto keep = std::make_shared<std::vector<Napi::ObjectReference>>();
  const size_t cells = static_cast<size_t>(count * levels);
  const int32_t* above = typedArg<int32_t, napi_int32_array>(info, 0, "above", "Int32Array", cells, keep);
  const int32_t* truthAbove = typedArg<int32_t, napi_int32_array>(info, 1, "truthAbove", "Int32Array", cells, keep);
  const int32_t* truthArea = typedArg<int32_t, napi_int32_array>(info, 2, "truthArea", "Int32Array", static_cast<size_t>(count), keep);
  if (info.Length() <= 5 || !info[5].IsTypedArray()) throwType(env, "Expected an Int32Array for tops");
  const size_t n = info[5].As<Napi::TypedArray>().ElementLength();
  const int32_t* tops = typedArg<int32_t, napi_int32_array>(info, 5, "tops", "Int32Array", n, keep);
  const double* areas = typedArg<double, napi_float64_array>(info, 6, "areas", "Float64Array", n, keep);
  const int32_t* bottoms = typedArg<int32_t, napi_int32_array>(info, 7, "bottoms", "Int32Array", n, keep);
  const double scale = argNumber(info, 8, "scale");
  std::vector<pn::inference::TripletLevels> triplets(n);
  for (size_t k = 0; k < n; ++k) triplets[k] = {tops[k], areas[k], bottoms[k]};
  return Task<std::vector<pn::inference::TripletScore>>::Run(
      env, "pneumo.scoreTriplets",
      [=] { return pn::inference::scoreTriplets(above, truthAbove, truthArea, count, levels, triplets, scale); },
      [keep](Napi::Env e, std::vector<pn::inference::TripletScore>& scores) -> Napi::Value {
        auto out = Napi::Float64Array::New(e, scores.size() * 4);
        for (size_t k = 0; k < scores.size(); ++k) {
          out[k * 4] = scores[k].meanDice;
          out[k * 4 + 1] = scores[k].meanEmpty;
          out[k * 4 + 2] = scores[k].meanNonEmpty;
          out[k * 4 + 3] = static_cast<double>(scores[k].positives);
        }
        return out;
      }, RunOn::Pool);
}

void RegisterInference(Napi::Env env, Napi::Object exports) {
  exports.Set("summariseMaps", Napi::Function::New(env, SummariseMaps, "summariseMaps"));
  exports.Set("scoreTriplets", Napi::Function::New(env, ScoreTriplets, "scoreTriplets"));
}

// ---- end inference: threshold search -----------------------------------------------------------

// ---- training engine, prediction, SWA ----------------------------------------------------------
// native/train/train_api.h. modelPredict(model, input, tta) and the BatchNorm recompute take a
// NativeModel; the engine and the recompute session are type-tagged Externals (freed by their
// finalizers, or at once by trainEngineDispose).

const pn::Model& modelArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(NativeModel::constructorOf(info.Env()))) {
    throwType(info.Env(), "Expected a NativeModel for model");
  }
  return Napi::ObjectWrap<NativeModel>::Unwrap(info[i].As<Napi::Object>())->get(info.Env());
}

Napi::Value modelOutputToJs(Napi::Env env, pn::ModelOutput& r) {
  auto o = Napi::Object::New(env);
  o.Set("mask", wrapTensor(env, std::move(r.mask)));
  if (r.label.defined()) o.Set("label", wrapTensor(env, std::move(r.label)));
  return o;
}

/** modelPredict(model, input, tta, cudaGraph = true) -> Promise<{ mask, label? }> (sigmoid probabilities). */
Napi::Value ModelPredict(const Napi::CallbackInfo& info) {
  pn::Model m = modelArg(info, 0);
  pn::Tensor x = NativeTensor::unwrapArg(info, 1, "input");
  const bool tta = info.Length() > 2 && info[2].ToBoolean().Value();
  const bool cudaGraph = info.Length() <= 3 || info[3].IsUndefined() || info[3].ToBoolean().Value();
  return Task<pn::ModelOutput>::Run(info.Env(), "pneumo.modelPredict", [m, x, tta, cudaGraph] { return pn::modelPredict(m, x, tta, cudaGraph); },
                                    modelOutputToJs);
}

/** modelGraphStatus(model) -> { graphs, captures, replays, eagerCalls, reason } (waits for a running call). */
Napi::Value ModelGraphStatus(const Napi::CallbackInfo& info) {
  pn::Model m = modelArg(info, 0);
  const pn::ModelGraphStatus s = syncCall(info.Env(), [&] { return pn::modelGraphStatus(m); });
  auto o = Napi::Object::New(info.Env());
  o.Set("graphs", static_cast<double>(s.graphs));
  o.Set("captures", static_cast<double>(s.captures));
  o.Set("replays", static_cast<double>(s.replays));
  o.Set("eagerCalls", static_cast<double>(s.eagerCalls));
  o.Set("reason", s.reason);
  return o;
}

const napi_type_tag kTrainEngineTag = {0x706e747261696e65ULL, 0x6e67696e652d6831ULL};
const napi_type_tag kBatchNormTag = {0x706e62617463686eULL, 0x6f726d2d72656331ULL};

template <typename T>
T& taggedArg(const Napi::CallbackInfo& info, size_t i, const napi_type_tag& tag, const char* what) {
  bool tagged = false;
  if (info.Length() > i && info[i].IsExternal()) napi_check_object_type_tag(info.Env(), info[i], &tag, &tagged);
  if (!tagged) throwType(info.Env(), std::string("Expected a ") + what + " handle");
  return *info[i].As<Napi::External<T>>().Data();
}

pn::TrainEngine engineArg(const Napi::CallbackInfo& info, size_t i) {
  const pn::TrainEngine& e = taggedArg<pn::TrainEngine>(info, i, kTrainEngineTag, "train engine");
  if (!e.defined()) throw Napi::Error::New(info.Env(), "TrainEngine has been disposed");
  return e;
}

pn::LossTermSpec lossTermArg(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) throwType(env, "Expected an object { kind, weight, options } for each loss term");
  const auto o = v.As<Napi::Object>();
  pn::LossTermSpec term;
  const Napi::Value kind = o.Get("kind");
  if (!kind.IsString() || !pn::parseLossKind(kind.As<Napi::String>().Utf8Value(), &term.kind)) {
    throwType(env, "Expected a loss name for loss[].kind");
  }
  term.weight = lossNumberOption(o, "weight", 1.0);
  const Napi::Value options = o.Get("options");
  if (options.IsObject()) {
    const auto lo = options.As<Napi::Object>();
    pn::LossOptions& d = term.options;
    d.bceWeight = lossNumberOption(lo, "bceWeight", d.bceWeight);
    d.diceWeight = lossNumberOption(lo, "diceWeight", d.diceWeight);
    d.focalWeight = lossNumberOption(lo, "focalWeight", d.focalWeight);
    d.perImageDice = lossBoolOption(lo, "perImageDice", d.perImageDice);
    d.smooth = lossNumberOption(lo, "smooth", d.smooth);
    d.alpha = lossNumberOption(lo, "alpha", d.alpha);
    d.positiveMargin = lossNumberOption(lo, "positiveMargin", d.positiveMargin);
    d.negativeMargin = lossNumberOption(lo, "negativeMargin", d.negativeMargin);
    d.symmetric = lossBoolOption(lo, "symmetric", d.symmetric);
  }
  return term;
}

/** createTrainEngine(model, { optimizer, loss, accumulation, gradClip, task, labelWeight, maskWeight }) -> handle. */
Napi::Value CreateTrainEngine(const Napi::CallbackInfo& info) {
  const pn::Model& model = modelArg(info, 0);
  const Napi::Object o = optionsArg(info, 1);
  pn::TrainEngineSpec spec;
  const Napi::Value optimizer = o.Get("optimizer");
  if (!optimizer.IsObject()) throwType(info.Env(), "Expected an object for options.optimizer");
  spec.optimizer = optimizerSpecArg(info.Env(), optimizer.As<Napi::Object>());
  const Napi::Value loss = o.Get("loss");
  if (loss.IsArray()) {
    const auto a = loss.As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); ++k) spec.loss.push_back(lossTermArg(info.Env(), a.Get(k)));
  } else if (!loss.IsUndefined()) {
    throwType(info.Env(), "Expected an array of loss terms for options.loss");
  }
  spec.accumulation = static_cast<int64_t>(lossNumberOption(o, "accumulation", 1));
  spec.gradClip = lossNumberOption(o, "gradClip", 0);
  const Napi::Value task = o.Get("task");
  spec.classify = task.IsString() && task.As<Napi::String>().Utf8Value() == "classify";
  spec.labelWeight = lossNumberOption(o, "labelWeight", spec.classify ? 1.0 : 0.0);
  spec.maskWeight = lossNumberOption(o, "maskWeight", 1.0);
  spec.auxWeight = lossNumberOption(o, "auxWeight", 0.4);  // bisenet: auxiliary heads' loss weight
  const Napi::Value scaler = o.Get("scaler");
  if (scaler.IsObject()) {
    const auto so = scaler.As<Napi::Object>();
    spec.scaler.mode = optString(so, "mode", "auto");
    spec.scaler.initScale = lossNumberOption(so, "initScale", spec.scaler.initScale);
    spec.scaler.growthFactor = lossNumberOption(so, "growthFactor", spec.scaler.growthFactor);
    spec.scaler.backoffFactor = lossNumberOption(so, "backoffFactor", spec.scaler.backoffFactor);
    spec.scaler.growthInterval = static_cast<int64_t>(lossNumberOption(so, "growthInterval", static_cast<double>(spec.scaler.growthInterval)));
  } else if (!scaler.IsUndefined()) {
    throwType(info.Env(), "Expected an object for options.scaler");
  }
  spec.cudaGraphs = optString(o, "cudaGraphs", "auto");
  pn::TrainEngine engine = syncCall(info.Env(), [&] { return pn::createTrainEngine(model, spec); });
  auto handle = Napi::External<pn::TrainEngine>::New(info.Env(), new pn::TrainEngine(std::move(engine)),
                                                     [](Napi::Env, pn::TrainEngine* e) { delete e; });
  napi_type_tag_object(info.Env(), handle, &kTrainEngineTag);
  return handle;
}

Napi::Value TrainEngineDispose(const Napi::CallbackInfo& info) {
  taggedArg<pn::TrainEngine>(info, 0, kTrainEngineTag, "train engine") = pn::TrainEngine();
  return info.Env().Undefined();
}

/** trainEngineStep(engine, images, masks, labels?) -> Promise<{ loss, gradNorm, finite, stepped }>. */
Napi::Value TrainEngineStep(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  pn::Tensor images = NativeTensor::unwrapArg(info, 1, "images");
  pn::Tensor masks = NativeTensor::unwrapArg(info, 2, "masks");
  pn::Tensor labels;
  if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) labels = NativeTensor::unwrapArg(info, 3, "labels");
  return Task<pn::TrainStepResult>::Run(info.Env(), "pneumo.trainEngineStep",
                                        [e, images, masks, labels] { return pn::trainEngineStep(e, images, masks, labels); },
                                        [](Napi::Env env, pn::TrainStepResult& r) -> Napi::Value {
                                          auto o = Napi::Object::New(env);
                                          o.Set("loss", r.loss);
                                          o.Set("gradNorm", r.gradNorm);
                                          o.Set("finite", r.finite);
                                          o.Set("stepped", r.stepped);
                                          o.Set("lossScale", r.lossScale);
                                          o.Set("overflow", r.overflow);
                                          o.Set("graphed", r.graphed);
                                          return o;
                                        });
}

Napi::Value TrainEngineGroups(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  const auto groups = syncCall(info.Env(), [&] { return pn::trainEngineGroups(e); });
  auto out = Napi::Array::New(info.Env(), groups.size());
  for (size_t k = 0; k < groups.size(); ++k) {
    auto g = Napi::Object::New(info.Env());
    g.Set("name", groups[k].name);
    g.Set("lr", groups[k].lr);
    g.Set("initialLr", groups[k].initialLr);
    g.Set("weightDecay", groups[k].weightDecay);
    g.Set("parameters", stringsToJs(info.Env(), groups[k].parameters));
    out.Set(static_cast<uint32_t>(k), g);
  }
  return out;
}

Napi::Value TrainEngineSetLr(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  const int64_t group = argInteger(info, 1, "group");
  const double lr = argNumber(info, 2, "lr");
  syncCall(info.Env(), [&] {
    pn::trainEngineSetLr(e, group, lr);
    return 0;
  });
  return info.Env().Undefined();
}

Napi::Value TrainEngineScaleLr(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  const double factor = argNumber(info, 1, "factor");
  syncCall(info.Env(), [&] {
    pn::trainEngineScaleLr(e, factor);
    return 0;
  });
  return info.Env().Undefined();
}

Napi::Value TrainEngineOptimizerState(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  return Task<std::vector<std::pair<std::string, pn::Tensor>>>::Run(
      info.Env(), "pneumo.trainEngineOptimizerState", [e] { return pn::trainEngineOptimizerState(e); },
      [](Napi::Env env, std::vector<std::pair<std::string, pn::Tensor>>& r) -> Napi::Value { return namedTensorsResult(env, r); }, RunOn::Pool);
}

Napi::Value TrainEngineLoadOptimizerState(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  auto state = namedTensorsArg(info, 1, "state");
  return Task<int>::Run(
      info.Env(), "pneumo.trainEngineLoadOptimizerState",
      [e, state] {
        pn::trainEngineLoadOptimizerState(e, state);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
}

/** trainEngineGraphStatus(engine) -> { mode, active, captures, replays, eagerSteps, reason }. */
Napi::Value TrainEngineGraphStatus(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  const pn::TrainEngineGraphStatus s = syncCall(info.Env(), [&] { return pn::trainEngineGraphStatus(e); });
  auto o = Napi::Object::New(info.Env());
  o.Set("mode", s.mode);
  o.Set("active", s.active);
  o.Set("captures", static_cast<double>(s.captures));
  o.Set("replays", static_cast<double>(s.replays));
  o.Set("eagerSteps", static_cast<double>(s.eagerSteps));
  o.Set("reason", s.reason);
  return o;
}

Napi::Value TrainEnginePending(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  return Napi::Number::New(info.Env(), static_cast<double>(syncCall(info.Env(), [&] { return pn::trainEnginePending(e); })));
}

/** averageStateDicts([[[name, NativeTensor], ...], ...], weights: number[]) -> Promise<[name, NativeTensor][]>. */
Napi::Value AverageStateDicts(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsArray()) throwType(info.Env(), "Expected an array of state dicts for dicts");
  const auto a = info[0].As<Napi::Array>();
  std::vector<std::vector<std::pair<std::string, pn::Tensor>>> dicts;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value entry = a.Get(k);
    if (!entry.IsArray()) throwType(info.Env(), "Expected an array of [name, Tensor] pairs for dicts[" + std::to_string(k) + "]");
    const auto pairs = entry.As<Napi::Array>();
    std::vector<std::pair<std::string, pn::Tensor>> dict;
    for (uint32_t j = 0; j < pairs.Length(); ++j) {
      const Napi::Value pair = pairs.Get(j);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2 || !pair.As<Napi::Array>().Get(0u).IsString()) {
        throwType(info.Env(), "Expected [name, Tensor] pairs for dicts[" + std::to_string(k) + "]");
      }
      const Napi::Value t = pair.As<Napi::Array>().Get(1u);
      if (!t.IsObject() || !t.As<Napi::Object>().InstanceOf(NativeTensor::constructorOf(info.Env()))) {
        throwType(info.Env(), "Expected [name, Tensor] pairs for dicts[" + std::to_string(k) + "]");
      }
      dict.emplace_back(pair.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(),
                        Napi::ObjectWrap<NativeTensor>::Unwrap(t.As<Napi::Object>())->get(info.Env()));
    }
    dicts.push_back(std::move(dict));
  }
  std::vector<double> weights;
  if (info.Length() > 1 && info[1].IsArray()) {
    const auto w = info[1].As<Napi::Array>();
    for (uint32_t k = 0; k < w.Length(); ++k) {
      if (!w.Get(k).IsNumber()) throwType(info.Env(), "Expected an array of numbers for weights");
      weights.push_back(w.Get(k).As<Napi::Number>().DoubleValue());
    }
  }
  return Task<std::vector<std::pair<std::string, pn::Tensor>>>::Run(
      info.Env(), "pneumo.averageStateDicts", [dicts, weights] { return pn::averageStateDicts(dicts, weights); },
      [](Napi::Env env, std::vector<std::pair<std::string, pn::Tensor>>& r) -> Napi::Value { return namedTensorsResult(env, r); });
}

pn::BatchNormRecompute batchNormArg(const Napi::CallbackInfo& info, size_t i) {
  return taggedArg<pn::BatchNormRecompute>(info, i, kBatchNormTag, "BatchNorm recompute");
}

/** batchNormRecomputeBegin(model) -> Promise<handle>: saves the statistics, train mode, measures each layer's update factor. */
Napi::Value BatchNormRecomputeBegin(const Napi::CallbackInfo& info) {
  pn::Model m = modelArg(info, 0);
  return Task<pn::BatchNormRecompute>::Run(info.Env(), "pneumo.batchNormRecomputeBegin", [m] { return pn::beginBatchNormRecompute(m); },
                                           [](Napi::Env env, pn::BatchNormRecompute& s) -> Napi::Value {
                                             auto handle = Napi::External<pn::BatchNormRecompute>::New(
                                                 env, new pn::BatchNormRecompute(std::move(s)),
                                                 [](Napi::Env, pn::BatchNormRecompute* p) { delete p; });
                                             napi_type_tag_object(env, handle, &kBatchNormTag);
                                             return handle;
                                           });
}

Napi::Value BatchNormRecomputeAdd(const Napi::CallbackInfo& info) {
  pn::BatchNormRecompute s = batchNormArg(info, 0);
  pn::Tensor x = NativeTensor::unwrapArg(info, 1, "batch");
  return Task<int64_t>::Run(info.Env(), "pneumo.batchNormRecomputeAdd", [s, x] { return pn::batchNormRecomputeAdd(s, x); },
                            [](Napi::Env env, int64_t& n) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(n)); });
}

Napi::Value BatchNormRecomputeFinish(const Napi::CallbackInfo& info) {
  pn::BatchNormRecompute s = batchNormArg(info, 0);
  return Task<int64_t>::Run(info.Env(), "pneumo.batchNormRecomputeFinish", [s] { return pn::finishBatchNormRecompute(s); },
                            [](Napi::Env env, int64_t& n) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(n)); });
}

Napi::Value BatchNormRecomputeAbort(const Napi::CallbackInfo& info) {
  pn::BatchNormRecompute s = batchNormArg(info, 0);
  return Task<int>::Run(
      info.Env(), "pneumo.batchNormRecomputeAbort",
      [s] {
        pn::abortBatchNormRecompute(s);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

void RegisterTraining(Napi::Env env, Napi::Object exports) {
  exports.Set("modelPredict", Napi::Function::New(env, ModelPredict, "modelPredict"));
  exports.Set("modelGraphStatus", Napi::Function::New(env, ModelGraphStatus, "modelGraphStatus"));
  exports.Set("createTrainEngine", Napi::Function::New(env, CreateTrainEngine, "createTrainEngine"));
  exports.Set("trainEngineDispose", Napi::Function::New(env, TrainEngineDispose, "trainEngineDispose"));
  exports.Set("trainEngineStep", Napi::Function::New(env, TrainEngineStep, "trainEngineStep"));
  exports.Set("trainEngineGroups", Napi::Function::New(env, TrainEngineGroups, "trainEngineGroups"));
  exports.Set("trainEngineSetLr", Napi::Function::New(env, TrainEngineSetLr, "trainEngineSetLr"));
  exports.Set("trainEngineScaleLr", Napi::Function::New(env, TrainEngineScaleLr, "trainEngineScaleLr"));
  exports.Set("trainEngineOptimizerState", Napi::Function::New(env, TrainEngineOptimizerState, "trainEngineOptimizerState"));
  exports.Set("trainEngineLoadOptimizerState", Napi::Function::New(env, TrainEngineLoadOptimizerState, "trainEngineLoadOptimizerState"));
  exports.Set("trainEnginePending", Napi::Function::New(env, TrainEnginePending, "trainEnginePending"));
  exports.Set("trainEngineGraphStatus", Napi::Function::New(env, TrainEngineGraphStatus, "trainEngineGraphStatus"));
  exports.Set("averageStateDicts", Napi::Function::New(env, AverageStateDicts, "averageStateDicts"));
  exports.Set("batchNormRecomputeBegin", Napi::Function::New(env, BatchNormRecomputeBegin, "batchNormRecomputeBegin"));
  exports.Set("batchNormRecomputeAdd", Napi::Function::New(env, BatchNormRecomputeAdd, "batchNormRecomputeAdd"));
  exports.Set("batchNormRecomputeFinish", Napi::Function::New(env, BatchNormRecomputeFinish, "batchNormRecomputeFinish"));
  exports.Set("batchNormRecomputeAbort", Napi::Function::New(env, BatchNormRecomputeAbort, "batchNormRecomputeAbort"));
}

// ---- end training engine, prediction, SWA ------------------------------------------------------

// ---- distributed training (c10d) ----------------------------------------------------------------

const napi_type_tag kProcessGroupTag = {0x706e70726f636573ULL, 0x732d67726f757031ULL};

pn::ProcessGroup groupArg(const Napi::CallbackInfo& info, size_t i) {
  const pn::ProcessGroup& g = taggedArg<pn::ProcessGroup>(info, i, kProcessGroupTag, "process group");
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
      [](Napi::Env env, pn::ProcessGroup& g) -> Napi::Value {
        auto handle = Napi::External<pn::ProcessGroup>::New(env, new pn::ProcessGroup(std::move(g)), [](Napi::Env, pn::ProcessGroup* p) { delete p; });
        napi_type_tag_object(env, handle, &kProcessGroupTag);
        return handle;
      },
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
  pn::ProcessGroup& g = taggedArg<pn::ProcessGroup>(info, 0, kProcessGroupTag, "process group");
  pn::ProcessGroup held = g;
  g = pn::ProcessGroup();
  syncCall(info.Env(), [&] {
    pn::destroyProcessGroup(held);
    return 0;
  });
  return info.Env().Undefined();
}

void RegisterDistributed(Napi::Env env, Napi::Object exports) {
  exports.Set("distributedInfo", Napi::Function::New(env, DistributedInfo, "distributedInfo"));
  exports.Set("createProcessGroup", Napi::Function::New(env, CreateProcessGroup, "createProcessGroup"));
  exports.Set("processGroupBarrier", Napi::Function::New(env, ProcessGroupBarrier, "processGroupBarrier"));
  exports.Set("processGroupAllGatherBytes", Napi::Function::New(env, ProcessGroupAllGatherBytes, "processGroupAllGatherBytes"));
  exports.Set("processGroupAllReduceSum", Napi::Function::New(env, ProcessGroupAllReduceSum, "processGroupAllReduceSum"));
  exports.Set("processGroupBroadcastModel", Napi::Function::New(env, ProcessGroupBroadcastModel, "processGroupBroadcastModel"));
  exports.Set("attachDistributed", Napi::Function::New(env, AttachDistributed, "attachDistributed"));
  exports.Set("destroyProcessGroup", Napi::Function::New(env, DestroyProcessGroup, "destroyProcessGroup"));
}

// ---- end distributed training -------------------------------------------------------------------

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pn::installCpuAllocator();
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  Napi::Function tensorClass = NativeTensor::Define(env);
  data->tensorConstructor = Napi::Persistent(tensorClass);

  exports.Set("version", Napi::String::New(env, PN_VERSION));
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  exports.Set("NativeTensor", tensorClass);
  exports.Set("fromTypedArray", Napi::Function::New(env, FromTypedArray, "fromTypedArray"));
  exports.Set("filled", Napi::Function::New(env, Filled, "filled"));
  exports.Set("binary", Napi::Function::New(env, Binary, "binary"));
  exports.Set("reduce", Napi::Function::New(env, Reduce, "reduce"));
  exports.Set("reshape", Napi::Function::New(env, Reshape, "reshape"));
  exports.Set("clone", Napi::Function::New(env, Clone, "clone"));
  exports.Set("normalizeU8", Napi::Function::New(env, NormalizeU8, "normalizeU8"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeed, "manualSeed"));
  exports.Set("setCudnnOptions", Napi::Function::New(env, SetCudnnOptions, "setCudnnOptions"));
  exports.Set("cudaMemoryStats", Napi::Function::New(env, CudaMemoryStats, "cudaMemoryStats"));
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo, "runtimeInfo"));
  exports.Set("smokeTrain", Napi::Function::New(env, SmokeTrain, "smokeTrain"));
  exports.Set("counters", Napi::Function::New(env, Counters, "counters"));
  exports.Set("hasTurboJpeg", Napi::Boolean::New(env, pn::data::hasTurboJpeg()));
  exports.Set("decodeImageBatch", Napi::Function::New(env, DecodeImageBatch, "decodeImageBatch"));
  exports.Set("decodeImageBatchInto", Napi::Function::New(env, DecodeImageBatchInto, "decodeImageBatchInto"));
  exports.Set("readImageFiles", Napi::Function::New(env, ReadImageFiles, "readImageFiles"));
  // ---- datapath: libpng in the batch path ----
  exports.Set("hasLibPng", Napi::Boolean::New(env, pn::data::hasLibPng()));
  exports.Set("setCpuCacheLimit", Napi::Function::New(env, SetCpuCacheLimit, "setCpuCacheLimit"));
  exports.Set("emptyCpuCache", Napi::Function::New(env, EmptyCpuCache, "emptyCpuCache"));
  RegisterAugmentation(env, exports);
  RegisterLossesAndOptimizers(env, exports);
  RegisterModels(env, exports, data);
  RegisterTraining(env, exports);
  RegisterInference(env, exports);
  RegisterDistributed(env, exports);
  InitStore(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(pneumo_native, Init)
