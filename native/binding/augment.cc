// The augmentation slice of the N-API boundary (native/augment/augment_api.h <-> src/native/augment.ts).
// augmentBatch(images, masks | null, plan: Float64Array, options) -> Promise<{ images, masks? }>.
// The plan is copied before the task starts.
#include <napi.h>

#include <string>
#include <vector>

#include "../augment/augment_api.h"
#include "../core/api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace pn::binding {
namespace {

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
  const pn::Tensor images = tensorArg(info, 0, "images");
  pn::Tensor masks;
  if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined()) masks = tensorArg(info, 1, "masks");
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

}  // namespace

void InitAugment(Napi::Env env, Napi::Object exports) {
  exports.Set("augmentBatch", Napi::Function::New(env, AugmentBatch, "augmentBatch"));
}

}  // namespace pn::binding
