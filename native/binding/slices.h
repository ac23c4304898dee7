// The slices of the N-API boundary, one per concept (sharp's pipeline.cc/metadata.cc, onnxruntime-node's
// per-class files): native/<concept>/*_api.h (torch-free C++) <-> native/binding/<concept>.cc (this
// layer) <-> src/native/<concept>.ts (the types). Each slice registers its exports in Init<Concept>;
// init.cc calls them all. What one slice lends another (tensors, models, engines, named tensor
// lists) is declared here. napi.h and the torch-free *_api.h headers only: never torch.
#pragma once

#include <napi.h>

#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"
#include "../models/model_api.h"
#include "../train/train_api.h"

namespace pn::binding {

/** Per-environment data: the wrapped classes' constructors (instanceof checks, wrapping results). */
struct AddonData {
  Napi::FunctionReference tensorConstructor;
  Napi::FunctionReference modelConstructor;
};

// ---- tensor.cc ----------------------------------------------------------------------------------

/** A new NativeTensor owning `tensor`. */
Napi::Object wrapTensor(Napi::Env env, pn::Tensor tensor);
/** For Task's done callbacks: wraps the result. */
Napi::Value tensorResult(Napi::Env env, pn::Tensor& t);
/** The tensor of a NativeTensor at info[i] ("Expected a Tensor for <name>"; disposed: an Error). */
const pn::Tensor& tensorArg(const Napi::CallbackInfo& info, size_t i, const char* name);
/** The tensor of `value` when it is a NativeTensor (disposed: an Error), else nullptr. */
const pn::Tensor* tensorOf(Napi::Env env, const Napi::Value& value);

using NamedTensors = std::vector<std::pair<std::string, pn::Tensor>>;
/** [[name, NativeTensor], ...] at info[i] (state dicts, optimizer state, checkpoint extras). */
NamedTensors namedTensorsArg(const Napi::CallbackInfo& info, size_t i, const char* name);
/** Named tensors -> [[name, NativeTensor], ...] (the tensors are moved into their wrappers). */
Napi::Array namedTensorsResult(Napi::Env env, NamedTensors& tensors);

// ---- model.cc -----------------------------------------------------------------------------------

Napi::Object wrapModel(Napi::Env env, pn::Model model);
/** The model of a NativeModel at info[i] ("Expected a NativeModel for model"; disposed: an Error). */
const pn::Model& modelArg(const Napi::CallbackInfo& info, size_t i);

// ---- train.cc -----------------------------------------------------------------------------------

/** The engine behind a train engine handle at info[i] (disposed: an Error). */
pn::TrainEngine engineArg(const Napi::CallbackInfo& info, size_t i);

// ---- one Init per slice (init.cc calls them in this order) --------------------------------------

void InitTensor(Napi::Env env, Napi::Object exports);
void InitRuntime(Napi::Env env, Napi::Object exports);
void InitData(Napi::Env env, Napi::Object exports);
void InitAugment(Napi::Env env, Napi::Object exports);
void InitTrain(Napi::Env env, Napi::Object exports);
void InitModel(Napi::Env env, Napi::Object exports);
void InitSwa(Napi::Env env, Napi::Object exports);
void InitScoring(Napi::Env env, Napi::Object exports);
void InitStore(Napi::Env env, Napi::Object exports);
void InitDistributed(Napi::Env env, Napi::Object exports);

}  // namespace pn::binding
