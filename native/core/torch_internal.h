// Shared by the torch-side translation units only (never include from native/binding/).
#pragma once

#include <torch/torch.h>

#include <utility>

#include "api.h"

namespace pn {

struct Tensor::Impl {
  at::Tensor value;
};

inline const at::Tensor& unwrap(const Tensor& t) {
  if (!t.defined()) throw Error("tensor is undefined (disposed or never created)");
  return t.impl()->value;
}

inline Tensor wrap(at::Tensor value) { return Tensor(std::make_shared<Tensor::Impl>(Tensor::Impl{std::move(value)})); }

at::ScalarType toScalarType(DType dtype);
DType fromScalarType(at::ScalarType type);
/** Parses "cpu", "cuda", "cuda:1"; a CUDA device without CUDA gives a clear pn::Error. */
at::Device parseDevice(const std::string& device);

/**
 * Runs `fn` and turns LibTorch's c10::Error into pn::Error with the message alone (no C++
 * backtrace), so that JS sees exactly what LibTorch said.
 */
template <typename Fn>
auto guard(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    throw Error(e.what_without_backtrace());
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(e.what());
  }
}

}  // namespace pn
