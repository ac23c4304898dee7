// The tensor slice of the N-API boundary (native/core/api.h <-> src/native/tensor.ts): the wrapped
// NativeTensor, the factory and arithmetic functions, and the helpers other slices use to take and
// return tensors (slices.h).
#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace pn::binding {
namespace {

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

  /** The tensor of `value` when it is a NativeTensor (disposed: an Error), else nullptr. */
  static const pn::Tensor* of(Napi::Env env, const Napi::Value& value) {
    if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(constructorOf(env))) return nullptr;
    return &Unwrap(value.As<Napi::Object>())->get(env);
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
  pn::Tensor a = tensorArg(info, 1, "a");
  pn::Tensor b = tensorArg(info, 2, "b");
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
  pn::Tensor a = tensorArg(info, 1, "a");
  auto dims = argIntArray(info, 2, "dims");
  const bool keepDim = info.Length() > 3 && info[3].ToBoolean().Value();
  return Task<pn::Tensor>::Run(info.Env(), "pneumo.reduce", [=] { return pn::reduce(op, a, dims, keepDim); }, tensorResult);
}

Napi::Value Reshape(const Napi::CallbackInfo& info) {
  const pn::Tensor& a = tensorArg(info, 0, "a");
  auto shape = argIntArray(info, 1, "shape");
  return syncCall(info.Env(), [&] { return wrapTensor(info.Env(), pn::reshape(a, shape)); });
}

Napi::Value Clone(const Napi::CallbackInfo& info) {
  pn::Tensor a = tensorArg(info, 0, "a");
  return Task<pn::Tensor>::Run(info.Env(), "pneumo.clone", [=] { return pn::clone(a); }, tensorResult);
}

Napi::Value NormalizeU8(const Napi::CallbackInfo& info) {
  pn::Tensor a = tensorArg(info, 0, "images");
  const float mean = static_cast<float>(argNumber(info, 1, "mean"));
  const float std = static_cast<float>(argNumber(info, 2, "std"));
  return Task<pn::Tensor>::Run(info.Env(), "pneumo.normalizeU8", [=] { return pn::normalizeU8(a, mean, std); }, tensorResult);
}

}  // namespace

Napi::Object wrapTensor(Napi::Env env, pn::Tensor tensor) {
  return NativeTensor::constructorOf(env).New({Napi::External<pn::Tensor>::New(env, &tensor)});
}

Napi::Value tensorResult(Napi::Env env, pn::Tensor& t) { return wrapTensor(env, std::move(t)); }

const pn::Tensor* tensorOf(Napi::Env env, const Napi::Value& value) { return NativeTensor::of(env, value); }

const pn::Tensor& tensorArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const pn::Tensor* t = info.Length() > i ? tensorOf(info.Env(), info[i]) : nullptr;
  if (t == nullptr) throwType(info.Env(), std::string("Expected a Tensor for ") + name);
  return *t;
}

/** [[name, NativeTensor], ...] -> named tensors (optimizers, state dicts, checkpoints, the engine). */
NamedTensors namedTensorsArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const std::string expected = std::string("Expected an array of [name, Tensor] pairs for ") + name;
  if (info.Length() <= i || !info[i].IsArray()) throwType(info.Env(), expected);
  const auto a = info[i].As<Napi::Array>();
  NamedTensors out;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    const Napi::Value pair = a.Get(k);
    if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2 || !pair.As<Napi::Array>().Get(0u).IsString()) throwType(info.Env(), expected);
    const pn::Tensor* t = tensorOf(info.Env(), pair.As<Napi::Array>().Get(1u));
    if (t == nullptr) throwType(info.Env(), expected);
    out.emplace_back(pair.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(), *t);
  }
  return out;
}

Napi::Array namedTensorsResult(Napi::Env env, NamedTensors& tensors) {
  auto out = Napi::Array::New(env, tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k) {
    auto pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::String::New(env, tensors[k].first));
    pair.Set(1u, wrapTensor(env, std::move(tensors[k].second)));
    out.Set(static_cast<uint32_t>(k), pair);
  }
  return out;
}

void InitTensor(Napi::Env env, Napi::Object exports) {
  Napi::Function tensorClass = NativeTensor::Define(env);
  env.GetInstanceData<AddonData>()->tensorConstructor = Napi::Persistent(tensorClass);
  exports.Set("NativeTensor", tensorClass);
  exports.Set("fromTypedArray", Napi::Function::New(env, FromTypedArray, "fromTypedArray"));
  exports.Set("filled", Napi::Function::New(env, Filled, "filled"));
  exports.Set("binary", Napi::Function::New(env, Binary, "binary"));
  exports.Set("reduce", Napi::Function::New(env, Reduce, "reduce"));
  exports.Set("reshape", Napi::Function::New(env, Reshape, "reshape"));
  exports.Set("clone", Napi::Function::New(env, Clone, "clone"));
  exports.Set("normalizeU8", Napi::Function::New(env, NormalizeU8, "normalizeU8"));
}

}  // namespace pn::binding
