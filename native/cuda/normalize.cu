// Fused uint8 -> normalised float32 conversion for image batches on the GPU: one read and one
// write per pixel instead of ATen's cast, divide, subtract and divide passes.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pn::cuda {

__global__ void normalizeU8Kernel(const uint8_t* __restrict__ src, float* __restrict__ dst, int64_t n, float scale,
                                  float shift) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    dst[i] = fmaf(static_cast<float>(src[i]), scale, shift);
  }
}

void normalizeU8(const uint8_t* src, float* dst, int64_t n, float mean, float std, void* stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(wanted < 65535 ? wanted : 65535);
  normalizeU8Kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(src, dst, n, 1.0f / (255.0f * std),
                                                                                -mean / std);
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw std::runtime_error(std::string("normalizeU8 kernel: ") + cudaGetErrorString(status));
}

}  // namespace pn::cuda
