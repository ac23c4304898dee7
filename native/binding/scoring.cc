// The scoring slice of the N-API boundary (native/inference/thresholds_api.h <-> src/native/scoring.ts):
// the threshold search's per-map summaries and triplet scores.
// summariseMaps(maps: Uint8Array | Float32Array, count, pixels, truth: Uint8Array | null,
//               thresholds: Float64Array | null, threads) -> Promise<{ levels, above, truthAbove?, truthArea? }>
// scoreTriplets(above, truthAbove, truthArea, count, levels, tops: Int32Array, areas: Float64Array,
//               bottoms: Int32Array, scale) -> Promise<Float64Array [T x 4]: mean, empty, nonEmpty, positives>
// predictSummaries(model, images, masks, tta, thresholds: Float64Array, threads)
//               -> Promise<{ count, height, width, levels, above, truthAbove, truthArea }>
// Input buffers are held by references until the task settles.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../core/api.h"
#include "../inference/thresholds_api.h"
#include "../models/model_api.h"
#include "../train/train_api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace pn::binding {
namespace {

Napi::Int32Array int32Array(Napi::Env env, const std::vector<int32_t>& v) {
  auto a = Napi::Int32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

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
    auto o = Napi::Object::New(e);
    o.Set("levels", static_cast<double>(s.levels));
    o.Set("above", int32Array(e, s.above));
    if (hasTruth) {
      o.Set("truthAbove", int32Array(e, s.truthAbove));
      o.Set("truthArea", int32Array(e, s.truthArea));
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

/** What predictSummaries computes: the summaries and the maps' size. */
struct PredictedSummaries {
  pn::inference::MapSummaries summaries;
  int64_t height = 0;
  int64_t width = 0;
};

/** A tensor's elements as float32 on the host. */
std::vector<float> hostFloats(const pn::Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  pn::toHost(t, out.data(), out.size() * sizeof(float), pn::DType::Float32);
  return out;
}

/**
 * Validation in one crossing per batch: modelPredict (eval-mode sigmoid probabilities, flip TTA
 * with `tta`), then the probability maps ([B, C, H, W]: B x C maps) and the truth (masks > 0.5, as
 * many values) summarised over the sorted float32 `thresholds` (summariseF32), in one task on the
 * compute thread. Only the summaries come back: neither the maps nor the masks enter JS.
 */
Napi::Value PredictSummaries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  pn::Model model = modelArg(info, 0);
  pn::Tensor images = tensorArg(info, 1, "images");
  pn::Tensor masks = tensorArg(info, 2, "masks");
  const bool tta = info.Length() > 3 && info[3].ToBoolean().Value();
  if (info.Length() <= 4 || !info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throwType(env, "Expected a Float64Array for thresholds");
  }
  const auto t = info[4].As<Napi::Float64Array>();
  std::vector<double> thresholds(t.Data(), t.Data() + t.ElementLength());
  if (thresholds.empty()) throwType(env, "Expected at least one threshold for thresholds");
  const int threads = static_cast<int>(argInteger(info, 5, "threads"));
  return Task<PredictedSummaries>::Run(
      env, "pneumo.predictSummaries",
      [model, images, masks, tta, thresholds, threads] {
        PredictedSummaries r;
        std::vector<float> maps;
        int64_t count = 0;
        {
          pn::ModelOutput out = pn::modelPredict(model, images, tta);
          const std::vector<int64_t> shape = out.mask.shape();
          if (shape.size() != 4) throw pn::Error("predictSummaries: the model's masks are not [B, C, H, W]");
          count = shape[0] * shape[1];
          r.height = shape[2];
          r.width = shape[3];
          maps = hostFloats(out.mask);
        }
        const int64_t pixels = r.height * r.width;
        if (masks.numel() != count * pixels) {
          throw pn::Error("predictSummaries: expected masks of " + std::to_string(count) + " x " + std::to_string(r.height) + " x " +
                          std::to_string(r.width) + " values (the predictions' shape), got " + std::to_string(masks.numel()));
        }
        const std::vector<float> truthValues = hostFloats(masks);
        std::vector<uint8_t> truth(truthValues.size());
        for (size_t k = 0; k < truth.size(); ++k) truth[k] = truthValues[k] > 0.5f ? 1 : 0;
        r.summaries = pn::inference::summariseF32(maps.data(), count, pixels, truth.data(), thresholds, threads);
        return r;
      },
      [](Napi::Env e, PredictedSummaries& r) -> Napi::Value {
        auto o = Napi::Object::New(e);
        o.Set("count", static_cast<double>(r.summaries.count));
        o.Set("height", static_cast<double>(r.height));
        o.Set("width", static_cast<double>(r.width));
        o.Set("levels", static_cast<double>(r.summaries.levels));
        o.Set("above", int32Array(e, r.summaries.above));
        o.Set("truthAbove", int32Array(e, r.summaries.truthAbove));
        o.Set("truthArea", int32Array(e, r.summaries.truthArea));
        return o;
      });
}

}  // namespace

void InitScoring(Napi::Env env, Napi::Object exports) {
  exports.Set("summariseMaps", Napi::Function::New(env, SummariseMaps, "summariseMaps"));
  exports.Set("scoreTriplets", Napi::Function::New(env, ScoreTriplets, "scoreTriplets"));
  exports.Set("predictSummaries", Napi::Function::New(env, PredictSummaries, "predictSummaries"));
}

}  // namespace pn::binding
