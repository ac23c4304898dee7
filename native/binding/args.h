// Argument helpers shared by every slice of the N-API boundary (native/binding/*.cc): JS values to
// C++ values, with a TypeError naming the bad input, and type-tagged handles. napi.h and the
// torch-free core/api.h only.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"

namespace pn::binding {

[[noreturn]] inline void throwType(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

inline std::string argString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) throwType(info.Env(), std::string("Expected a string for ") + name);
  return info[i].As<Napi::String>().Utf8Value();
}

inline double argNumber(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) throwType(info.Env(), std::string("Expected a number for ") + name);
  return info[i].As<Napi::Number>().DoubleValue();
}

inline int64_t argInteger(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const double v = argNumber(info, i, name);
  if (v != static_cast<double>(static_cast<int64_t>(v))) throwType(info.Env(), std::string("Expected an integer for ") + name);
  return static_cast<int64_t>(v);
}

inline std::vector<int64_t> argIntArray(const Napi::CallbackInfo& info, size_t i, const char* name) {
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

inline pn::DType argDType(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const std::string s = argString(info, i, name);
  pn::DType dtype;
  if (!pn::parseDType(s, &dtype)) throwType(info.Env(), std::string("Unknown dtype '") + s + "' for " + name);
  return dtype;
}

/** info[i] as an options object; undefined (or missing) is an empty one. */
inline Napi::Object optionsArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined()) return Napi::Object::New(info.Env());
  if (!info[i].IsObject()) throwType(info.Env(), "Expected an object for options");
  return info[i].As<Napi::Object>();
}

// ---- option fields: undefined or null keeps the fallback ----------------------------------------

/** o[key] as a number ("Expected a number for options.<key>"). */
inline double numberOption(const Napi::Object& o, const char* key, double fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throwType(o.Env(), std::string("Expected a number for options.") + key);
  return v.As<Napi::Number>().DoubleValue();
}

/** o[key] as a boolean ("Expected a boolean for options.<key>"). */
inline bool boolOption(const Napi::Object& o, const char* key, bool fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) throwType(o.Env(), std::string("Expected a boolean for options.") + key);
  return v.As<Napi::Boolean>().Value();
}

/** o[key] as a string ("Expected a string for spec.<key>"). */
inline std::string stringOption(const Napi::Object& o, const char* key, const std::string& fallback = "") {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) throwType(o.Env(), std::string("Expected a string for spec.") + key);
  return v.As<Napi::String>().Utf8Value();
}

/** o[key] as an integer ("Expected an integer for spec.<key>"; fractions truncate). */
inline int64_t integerOption(const Napi::Object& o, const char* key, int64_t fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throwType(o.Env(), std::string("Expected an integer for spec.") + key);
  return static_cast<int64_t>(v.As<Napi::Number>().DoubleValue());
}

/** o[key] as a truthy flag (absent: false). */
inline bool flagOption(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull() && v.ToBoolean().Value();
}

// ---- results ------------------------------------------------------------------------------------

inline Napi::Array toJsArray(Napi::Env env, const std::vector<int64_t>& values) {
  auto array = Napi::Array::New(env, values.size());
  for (size_t k = 0; k < values.size(); ++k) array.Set(static_cast<uint32_t>(k), Napi::Number::New(env, static_cast<double>(values[k])));
  return array;
}

inline Napi::Array stringsToJs(Napi::Env env, const std::vector<std::string>& values) {
  auto out = Napi::Array::New(env, values.size());
  for (size_t k = 0; k < values.size(); ++k) out.Set(static_cast<uint32_t>(k), Napi::String::New(env, values[k]));
  return out;
}

// ---- type-tagged handles (optimizer, train engine, BatchNorm recompute, process group) ----------

/** A JS External owning a copy of `value` (deleted by its finalizer), tagged with `tag`. */
template <typename T>
Napi::External<T> makeHandle(Napi::Env env, T value, const napi_type_tag& tag) {
  auto handle = Napi::External<T>::New(env, new T(std::move(value)), [](Napi::Env, T* p) { delete p; });
  napi_type_tag_object(env, handle, &tag);
  return handle;
}

/** The value behind info[i], a handle made by makeHandle with `tag` ("Expected <message>" otherwise). */
template <typename T>
T& taggedArg(const Napi::CallbackInfo& info, size_t i, const napi_type_tag& tag, const std::string& message) {
  bool tagged = false;
  if (info.Length() > i && info[i].IsExternal()) napi_check_object_type_tag(info.Env(), info[i], &tag, &tagged);
  if (!tagged) throwType(info.Env(), "Expected " + message);
  return *info[i].As<Napi::External<T>>().Data();
}

}  // namespace pn::binding
