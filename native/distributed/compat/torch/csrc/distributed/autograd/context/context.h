// Stand-in for LibTorch's torch/csrc/distributed/autograd/context/context.h, which c10d's
// reducer.hpp includes but Debian's libtorch-dev 1.13 does not ship. It is on the include path
// only through -idirafter (CMakeLists.txt), so a LibTorch that has the real header uses that.
//
// reducer.hpp needs two names from it: the ContextPtr type of one of c10d::Reducer's private
// members (a std::shared_ptr, whose layout does not depend on the pointee) and the
// DistAutogradContext::GradCallback type of a static_assert. pneumo-native never touches
// distributed autograd (RPC); the Reducer's code, compiled into libtorch_cpu, uses the real class.
#pragma once

#include <functional>
#include <memory>

#include <ATen/core/Tensor.h>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};
using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
