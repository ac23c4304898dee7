// Launchers for pneumo-native's CUDA kernels (native/cuda/*.cu), in plain C++ types so that the
// .cu files need no LibTorch headers. Declared only in CUDA builds (PN_WITH_CUDA).
#pragma once

#ifdef PN_WITH_CUDA
#include <cstdint>

namespace pn::cuda {

/** The current CUDA stream of `device` as an opaque handle (cudaStream_t). */
void* currentStream(int device);

/** dst[i] = (src[i] / 255 - mean) / std for n elements, on `stream`. */
void normalizeU8(const uint8_t* src, float* dst, int64_t n, float mean, float std, void* stream);

}  // namespace pn::cuda
#endif
