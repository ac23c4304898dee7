// Every LibTorch API difference pneumo-native builds across, in one place: LibTorch 1.13 (Debian
// bookworm's libtorch-dev) up to 2.x (2.6 in Debian trixie, 2.11 with CUDA 13 from pip wheels).
// Code elsewhere calls pn::compat and never tests TORCH_VERSION_* itself.
//
//   1.13 -> 2.3: c10::Allocator::allocate lost its const; copy_data became pure virtual.
//   1.13 -> 2.x: torch::optim::Optimizer keys its state by the TensorImpl pointer (void*), not by a
//                string; c10::guts::to_string is gone.
//   2.4:         CUDA graphs of the whole step become possible (PN_CUDA_GRAPHS).
//   2.4:         at::autocast's device-less calls (is_enabled, set_enabled, *_gpu_dtype, *_cpu_*) are
//                deprecated in favour of the device-typed ones (and warn on every call).
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <sstream>
#include <string>
#include <type_traits>

/** True when the LibTorch being compiled against is at least major.minor. */
#define PN_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

/** c10::Allocator::allocate is const up to LibTorch 2.2 (PN_ALLOCATE_CONST expands to `const` there). */
#if PN_TORCH_AT_LEAST(2, 3)
#define PN_ALLOCATE_CONST
#define PN_ALLOCATOR_HAS_COPY_DATA 1
#else
#define PN_ALLOCATE_CONST const
#define PN_ALLOCATOR_HAS_COPY_DATA 0
#endif

/**
 * Whole-step CUDA graphs (native/train/graphs.cpp): at::cuda::CUDAGraph with a capture mode, the
 * fused Adam/AdamW/SGD kernels reading the learning rate from a device tensor and
 * _foreach_mul_(TensorList, Tensor) are all there from LibTorch 2.4; CPU builds and older
 * LibTorch run every step eagerly.
 */
#if defined(PN_WITH_CUDA) && PN_TORCH_AT_LEAST(2, 4)
#define PN_CUDA_GRAPHS 1
#else
#define PN_CUDA_GRAPHS 0
#endif

namespace pn::compat {

/** "major.minor.patch" of the LibTorch headers this file was compiled against. */
inline std::string torchVersion() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

/**
 * The key torch::optim::Optimizer::state() uses for parameter `p`: the TensorImpl pointer as a
 * string (1.13, formatted as c10::guts::to_string did) or as void* (2.x). `Map` is the state map's
 * type, so the right key follows from the headers without a version test.
 */
template <typename Map>
typename Map::key_type optimizerStateKey(const at::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

// ---- autocast ----------------------------------------------------------------------------------

inline bool autocastEnabled(c10::DeviceType device) {
#if PN_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
#endif
}

inline void setAutocastEnabled(c10::DeviceType device, bool enabled) {
#if PN_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == c10::DeviceType::CPU) at::autocast::set_cpu_enabled(enabled);
  else at::autocast::set_enabled(enabled);
#endif
}

inline at::ScalarType autocastDtype(c10::DeviceType device) {
#if PN_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype() : at::autocast::get_autocast_gpu_dtype();
#endif
}

inline void setAutocastDtype(c10::DeviceType device, at::ScalarType dtype) {
#if PN_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::DeviceType::CPU) at::autocast::set_autocast_cpu_dtype(dtype);
  else at::autocast::set_autocast_gpu_dtype(dtype);
#endif
}

/**
 * Autocast on `device` in `dtype` for the calling thread while alive (nothing when `dtype` is
 * float32); restores the previous state and dtype, and clears the cast cache when autocast ends.
 */
class AutocastScope {
 public:
  AutocastScope(c10::DeviceType device, at::ScalarType dtype)
      : device_(device), on_(dtype != at::kFloat), previous_(on_ && autocastEnabled(device)),
        previousDtype_(on_ ? autocastDtype(device) : dtype) {
    if (!on_) return;
    setAutocastDtype(device_, dtype);
    setAutocastEnabled(device_, true);
  }
  ~AutocastScope() {
    if (!on_) return;
    setAutocastEnabled(device_, previous_);
    setAutocastDtype(device_, previousDtype_);
    if (!previous_) at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType device_;
  bool on_;
  bool previous_;
  at::ScalarType previousDtype_;
};

}  // namespace pn::compat
