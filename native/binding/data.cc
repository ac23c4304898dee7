// The data slice of the N-API boundary (native/data/data_api.h <-> src/native/data.ts): image batches
// decoded natively (libjpeg-turbo, libpng, JPEG DICOMs) into tensors, on libuv's pool.
#include <napi.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../core/api.h"
#include "../data/data_api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace pn::binding {
namespace {

/** info[i] as an array of finite numbers. */
std::vector<double> numberListArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsArray()) throwType(env, std::string("Expected an array of numbers for ") + name);
  const auto list = info[i].As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t k = 0; k < list.Length(); ++k) {
    const Napi::Value v = list.Get(k);
    if (!v.IsNumber()) throwType(env, std::string("Expected a number for ") + name + "[" + std::to_string(k) + "]");
    out.push_back(v.As<Napi::Number>().DoubleValue());
  }
  return out;
}

pn::data::BatchOptions batchOptionsArg(const Napi::CallbackInfo& info, size_t first) {
  pn::data::BatchOptions options;
  options.size = static_cast<int>(argInteger(info, first, "size"));
  options.normalize = info.Length() > first + 1 && info[first + 1].ToBoolean().Value();
  if (options.normalize && info.Length() > first + 2 && info[first + 2].IsArray()) {
    // Per output channel statistics (preprocess): arrays of 1 or 3 numbers, checked natively.
    options.channelMean = numberListArg(info, first + 2, "mean");
    options.channelStd = numberListArg(info, first + 3, "std");
  } else if (options.normalize) {
    options.mean = static_cast<float>(argNumber(info, first + 2, "mean"));
    options.std = static_cast<float>(argNumber(info, first + 3, "std"));
  }
  // ---- datapath: a number here is a flag set (1: accept damaged JPEG, 2: threshold masks, 4: quantize) ----
  if (info.Length() > first + 4 && info[first + 4].IsNumber()) {
    const int64_t flags = info[first + 4].As<Napi::Number>().Int64Value();
    options.acceptDamagedJpeg = (flags & 1) != 0;
    options.threshold = (flags & 2) != 0;
    options.quantize = (flags & 4) != 0;
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
  const pn::Tensor into = tensorArg(info, 0, "into");
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
  if (info.Length() > 6 && !info[6].IsUndefined() && !info[6].IsNull()) into = tensorArg(info, 6, "into");
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

/** stageTensors(tensors, device): resolves with the tensors on `device` (see data_api.h). */
Napi::Value StageTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throwType(env, "Expected an array of tensors for tensors");
  const auto list = info[0].As<Napi::Array>();
  std::vector<pn::Tensor> host;
  for (uint32_t k = 0; k < list.Length(); ++k) {
    const pn::Tensor* t = tensorOf(env, list.Get(k));
    if (t == nullptr) throwType(env, "Expected a Tensor for tensors[" + std::to_string(k) + "]");
    host.push_back(*t);
  }
  const std::string device = argString(info, 1, "device");
  return Task<std::vector<pn::Tensor>>::Run(
      env, "pneumo.stageTensors", [host, device] { return pn::data::stageTensors(host, device); },
      [](Napi::Env e, std::vector<pn::Tensor>& r) -> Napi::Value {
        auto out = Napi::Array::New(e, r.size());
        for (size_t k = 0; k < r.size(); ++k) out.Set(static_cast<uint32_t>(k), wrapTensor(e, std::move(r[k])));
        return out;
      }, RunOn::Pool);
}

}  // namespace

void InitData(Napi::Env env, Napi::Object exports) {
  exports.Set("hasTurboJpeg", Napi::Boolean::New(env, pn::data::hasTurboJpeg()));
  exports.Set("decodeImageBatch", Napi::Function::New(env, DecodeImageBatch, "decodeImageBatch"));
  exports.Set("decodeImageBatchInto", Napi::Function::New(env, DecodeImageBatchInto, "decodeImageBatchInto"));
  exports.Set("readImageFiles", Napi::Function::New(env, ReadImageFiles, "readImageFiles"));
  exports.Set("stageTensors", Napi::Function::New(env, StageTensors, "stageTensors"));
  // ---- datapath: libpng in the batch path ----
  exports.Set("hasLibPng", Napi::Boolean::New(env, pn::data::hasLibPng()));
}

}  // namespace pn::binding
