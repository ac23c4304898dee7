// The N-API glue of the prepared image store's native reader (native/data/store_api.h): an
// `openImageStore` that returns a handle whose `readBatch` reads records straight into batch
// tensors on a libuv worker (never the event loop, never the compute thread), optionally staged
// to a CUDA device. Includes only napi.h and torch-free headers. Its TypeScript counterpart is
// src/native/store.ts.
//
// Reads run as Tasks on libuv's pool (task.h, RunOn::Pool) so that they overlap the compute
// thread's training step; results are wrapped as NativeTensors (tensor.cc).
#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"
#include "../data/store_api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace {

using pn::binding::boolOption;
using pn::binding::numberOption;
using pn::binding::throwType;

/** Per-environment references: the store handle class. */
struct StoreAddonData {
  Napi::FunctionReference storeConstructor;
};

int64_t integerField(const Napi::Object& o, const char* key, bool optional = false, int64_t fallback = 0) {
  const Napi::Value v = o.Get(key);
  if (optional && (v.IsUndefined() || v.IsNull())) return fallback;
  if (!v.IsNumber()) throwType(o.Env(), std::string("Expected an integer for layout.") + key);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) throwType(o.Env(), std::string("Expected an integer for layout.") + key);
  return static_cast<int64_t>(d);
}

/** A store open for reading: a JS object owning the native file; closed by close() or its finalizer. */
class NativeImageStore final : public Napi::ObjectWrap<NativeImageStore> {
 public:
  static Napi::Function Define(Napi::Env env, StoreAddonData* data) {
    return DefineClass(env, "NativeImageStore",
                       {
                           InstanceMethod<&NativeImageStore::ReadBatch>("readBatch"),
                           InstanceMethod<&NativeImageStore::Close>("close"),
                           InstanceAccessor<&NativeImageStore::Closed>("closed"),
                       },
                       data);
  }

  /** new NativeImageStore(path, layout, checksums, written) (through openImageStore). */
  explicit NativeImageStore(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<NativeImageStore>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsString()) throwType(env, "Expected a string for path");
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    if (!info[1].IsObject()) throwType(env, "Expected an object for layout");
    const auto l = info[1].As<Napi::Object>();
    pn::data::StoreLayout layout;
    layout.size = integerField(l, "size");
    layout.count = integerField(l, "count");
    layout.images = integerField(l, "images");
    layout.masks = integerField(l, "masks", true, -1);
    if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) throwType(env, "Expected a Uint32Array for checksums");
    if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) throwType(env, "Expected a Uint8Array for written");
    const auto sums = info[2].As<Napi::Uint32Array>();
    const auto flags = info[3].As<Napi::Uint8Array>();
    std::vector<uint32_t> checksums(sums.Data(), sums.Data() + sums.ElementLength());
    std::vector<uint8_t> written(flags.Data(), flags.Data() + flags.ElementLength());
    try {
      store_ = pn::data::openImageStore(path, layout, std::move(checksums), std::move(written));
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

 private:
  /** readBatch(indices, { size?, masks?, normalize?, mean?, std?, verify?, device?, pinned? }): resolves with { images, masks? }. */
  Napi::Value ReadBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!store_) throw Napi::Error::New(env, "the image store is closed");
    if (info.Length() < 1 || !info[0].IsArray()) throwType(env, "Expected an array of image indices for indices");
    const auto list = info[0].As<Napi::Array>();
    std::vector<int64_t> indices;
    indices.reserve(list.Length());
    for (uint32_t k = 0; k < list.Length(); ++k) {
      const Napi::Value v = list.Get(k);
      const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -0.5;
      if (d != static_cast<double>(static_cast<int64_t>(d))) throwType(env, "Expected an array of integers for indices (indices[" + std::to_string(k) + "])");
      indices.push_back(static_cast<int64_t>(d));
    }
    pn::data::StoreReadOptions options;
    if (info.Length() > 1 && info[1].IsObject()) {
      const auto o = info[1].As<Napi::Object>();
      const auto flag = [&](const char* key, bool fallback) { return boolOption(o, key, fallback); };
      const auto number = [&](const char* key, double fallback) { return numberOption(o, key, fallback); };
      const double size = number("size", 0);
      if (size != static_cast<double>(static_cast<int>(size)) || size < 0) throwType(env, "Expected a non-negative integer for options.size");
      options.size = static_cast<int>(size);
      options.masks = flag("masks", options.masks);
      options.normalize = flag("normalize", options.normalize);
      options.mean = static_cast<float>(number("mean", options.mean));
      options.std = static_cast<float>(number("std", options.std));
      options.verify = flag("verify", options.verify);
      options.pinned = flag("pinned", options.pinned);
      const Napi::Value device = o.Get("device");
      if (!device.IsUndefined() && !device.IsNull()) {
        if (!device.IsString()) throwType(env, "Expected a string for options.device");
        options.device = device.As<Napi::String>().Utf8Value();
      }
    }
    std::shared_ptr<pn::data::ImageStoreFile> store = store_;
    return pn::binding::Task<pn::data::StoreBatch>::Run(
        env, "pneumo.imageStoreRead", [store, indices, options] { return pn::data::readStoreBatch(*store, indices, options); },
        [](Napi::Env e, pn::data::StoreBatch& r) -> Napi::Value {
          auto out = Napi::Object::New(e);
          out.Set("images", pn::binding::wrapTensor(e, std::move(r.images)));
          out.Set("masks", r.masks.defined() ? static_cast<Napi::Value>(pn::binding::wrapTensor(e, std::move(r.masks))) : e.Null());
          return out;
        },
        pn::binding::RunOn::Pool);
  }

  /** close(): resolves once reads in flight are done and the descriptor is closed. */
  Napi::Value Close(const Napi::CallbackInfo& info) {
    std::shared_ptr<pn::data::ImageStoreFile> store = std::move(store_);
    store_.reset();
    if (!store) {
      auto deferred = Napi::Promise::Deferred::New(info.Env());
      deferred.Resolve(info.Env().Undefined());
      return deferred.Promise();
    }
    return pn::binding::Task<int>::Run(
        info.Env(), "pneumo.imageStoreClose",
        [store] {
          pn::data::closeImageStore(*store);
          return 0;
        },
        [](Napi::Env e, int&) -> Napi::Value { return e.Undefined(); }, pn::binding::RunOn::Pool);
  }

  Napi::Value Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !store_); }

  std::shared_ptr<pn::data::ImageStoreFile> store_;  // its descriptor closes with the last holder
};

/** openImageStore(path, layout, checksums, written): a NativeImageStore. */
Napi::Value OpenImageStore(const Napi::CallbackInfo& info) {
  std::vector<napi_value> args;
  for (size_t k = 0; k < info.Length(); ++k) args.push_back(info[k]);
  return static_cast<StoreAddonData*>(info.Data())->storeConstructor.Value().New(args);
}

/** storeCrc32(bytes, crc?): the native CRC-32 (tests compare it with the JS one). */
Napi::Value StoreCrc32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) throwType(env, "Expected a Uint8Array for bytes");
  const auto bytes = info[0].As<Napi::Uint8Array>();
  const uint32_t crc = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  return Napi::Number::New(env, pn::data::crc32(bytes.Data(), bytes.ByteLength(), crc));
}

}  // namespace

/** Registers the store exports (after InitTensor: results are NativeTensors). */
void pn::binding::InitStore(Napi::Env env, Napi::Object exports) {
  auto* data = new StoreAddonData();
  Napi::Function storeClass = NativeImageStore::Define(env, data);
  data->storeConstructor = Napi::Persistent(storeClass);
  // Freed with the environment (the main thread's or a worker's).
  napi_add_env_cleanup_hook(env, [](void* arg) { delete static_cast<StoreAddonData*>(arg); }, data);
  exports.Set("NativeImageStore", storeClass);
  exports.Set("openImageStore", Napi::Function::New(env, OpenImageStore, "openImageStore", data));
  exports.Set("storeCrc32", Napi::Function::New(env, StoreCrc32, "storeCrc32"));
}
