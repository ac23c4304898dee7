// The fused combo loss (SPEC section 4) on the GPU: one kernel reads logits and targets once and
// leaves per-block partial sums, one block adds them in a fixed order (deterministic, no atomics)
// and writes the loss and the backward coefficients, and one kernel writes dL/dlogits. Nothing is
// copied to the host. The element math matches combo.cpp (see losses.h for the definition).
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "combo_cuda.h"

namespace pn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr double kDiceSmooth = 1e-6;
constexpr double kProbClamp = 1e-8;
constexpr double kMinLoss = 1e-5;

__device__ __forceinline__ float expOf(float v) { return expf(v); }
__device__ __forceinline__ double expOf(double v) { return exp(v); }
__device__ __forceinline__ float log1pOf(float v) { return log1pf(v); }
__device__ __forceinline__ double log1pOf(double v) { return log1p(v); }
__device__ __forceinline__ float logOf(float v) { return logf(v); }
__device__ __forceinline__ double logOf(double v) { return log(v); }

template <typename T>
struct Pixel {
  T p, q, bce, focal, focalGrad;

  __device__ __forceinline__ Pixel(T x, T t, bool withGrad) {
    const T lo = static_cast<T>(kProbClamp), one = 1, zero = 0;
    const T ax = x < zero ? -x : x;
    const T e = expOf(-ax);
    const T inv = one / (one + e);
    const bool nonNegative = x >= zero;
    p = nonNegative ? inv : e * inv;
    q = nonNegative ? e * inv : inv;
    const T softplusBase = log1pOf(e);
    const T relu = nonNegative ? x : zero;
    bce = relu - x * t + softplusBase;
    const bool below = p < lo, above = q < lo;
    const T pc = below ? lo : (above ? one - lo : p);
    const T qc = below ? one - lo : (above ? lo : q);
    const T pt = (one - t) * qc + t * pc;
    const T omp = (one - t) * pc + t * qc;
    T logPt;
    if (t == zero || t == one) {
      const T logLo = static_cast<T>(-18.420680743952367), logHi = static_cast<T>(-1.0000000050000001e-08);
      T logP = -((nonNegative ? zero : -x) + softplusBase);
      T logQ = -(relu + softplusBase);
      logP = logP < logLo ? logLo : (logP > logHi ? logHi : logP);
      logQ = logQ < logLo ? logLo : (logQ > logHi ? logHi : logQ);
      logPt = t * logP + (one - t) * logQ;
    } else {
      logPt = logOf(pt);
    }
    focal = -(omp * omp) * logPt;
    focalGrad = withGrad && !(below || above) ? (2 * omp * logPt - omp * omp / pt) * (2 * t - one) * p * q : zero;
  }
};

/** Grid (blocksPerImage, images): each block sums its share of one image into partials[image][block][5]. */
template <typename T>
__global__ void comboSumsKernel(const T* __restrict__ x, const T* __restrict__ t, int64_t perImage, double* partials) {
  const int64_t image = blockIdx.y;
  const int64_t base = image * perImage;
  double s[5] = {0, 0, 0, 0, 0};
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < perImage; i += stride) {
    const T xv = x[base + i], tv = t[base + i];
    const Pixel<T> px(xv, tv, false);
    s[0] += static_cast<double>(px.bce);
    s[1] += static_cast<double>(px.focal);
    s[2] += static_cast<double>(px.p * tv);
    s[3] += static_cast<double>(px.p);
    s[4] += static_cast<double>(tv);
  }
  __shared__ double shared[5][kThreads];
  for (int k = 0; k < 5; ++k) shared[k][threadIdx.x] = s[k];
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) {
      for (int k = 0; k < 5; ++k) shared[k][threadIdx.x] += shared[k][threadIdx.x + width];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double* out = partials + (image * gridDim.x + blockIdx.x) * 5;
    for (int k = 0; k < 5; ++k) out[k] = shared[k][0];
  }
}

/** One block: per-image totals in a fixed order, then the loss and coef (diceA, diceB per image; pass). */
template <typename T>
__global__ void comboFinishKernel(const double* partials, int64_t blocksPerImage, ComboConfig config, double* coef, T* loss) {
  __shared__ double shared[5][kThreads];
  __shared__ double totals[3];  // bce, focal, dice
  __shared__ double batch[3];   // p*t, p + t over the batch
  if (threadIdx.x == 0) {
    totals[0] = totals[1] = totals[2] = 0;
    batch[0] = batch[1] = 0;
  }
  __syncthreads();
  for (int64_t image = 0; image < config.images; ++image) {
    double s[5] = {0, 0, 0, 0, 0};
    for (int64_t b = threadIdx.x; b < blocksPerImage; b += blockDim.x) {
      for (int k = 0; k < 5; ++k) s[k] += partials[(image * blocksPerImage + b) * 5 + k];
    }
    for (int k = 0; k < 5; ++k) shared[k][threadIdx.x] = s[k];
    __syncthreads();
    for (int width = kThreads / 2; width > 0; width /= 2) {
      if (threadIdx.x < width) {
        for (int k = 0; k < 5; ++k) shared[k][threadIdx.x] += shared[k][threadIdx.x + width];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      totals[0] += shared[0][0];
      totals[1] += shared[1][0];
      batch[0] += shared[2][0];
      batch[1] += shared[3][0] + shared[4][0];
      if (config.perImageDice) {
        const double scale = 1.0 / static_cast<double>(config.images);
        const double den = shared[3][0] + shared[4][0] + kDiceSmooth, num = 2 * shared[2][0] + kDiceSmooth;
        coef[image * 2] = -scale * config.diceWeight * 2 / den;
        coef[image * 2 + 1] = scale * config.diceWeight * num / (den * den);
        totals[2] += (1 - num / den) * scale;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double n = static_cast<double>(config.numel);
    if (!config.perImageDice) {
      const double den = batch[1] + kDiceSmooth, num = 2 * batch[0] + kDiceSmooth;
      for (int64_t image = 0; image < config.images; ++image) {
        coef[image * 2] = -config.diceWeight * 2 / den;
        coef[image * 2 + 1] = config.diceWeight * num / (den * den);
      }
      totals[2] = 1 - num / den;
    }
    const double total = config.bceWeight * totals[0] / n + config.diceWeight * totals[2] + config.focalWeight * totals[1] / n;
    const bool nan = total != total;
    coef[config.images * 2] = total >= kMinLoss || nan ? 1.0 : 0.0;
    *loss = static_cast<T>(nan || total >= kMinLoss ? total : kMinLoss);
  }
}

template <typename T>
__global__ void comboGradKernel(const T* __restrict__ x, const T* __restrict__ t, ComboConfig config, const double* coef,
                                const T* gradOutput, T* __restrict__ grad) {
  const int64_t perImage = config.numel / config.images;
  const double go = static_cast<double>(*gradOutput) * coef[config.images * 2];
  const T wb = static_cast<T>(go * config.bceWeight / static_cast<double>(config.numel));
  const T wf = static_cast<T>(go * config.focalWeight / static_cast<double>(config.numel));
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < config.numel; i += stride) {
    const int64_t image = i / perImage;
    const T da = static_cast<T>(go * coef[image * 2]), db = static_cast<T>(go * coef[image * 2 + 1]);
    const T xv = x[i], tv = t[i];
    const Pixel<T> px(xv, tv, true);
    grad[i] = wb * (px.p - tv) + wf * px.focalGrad + (da * tv + db) * px.p * px.q;
  }
}

void check(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

int64_t gridFor(int64_t n) {
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  return wanted < 4096 ? (wanted > 0 ? wanted : 1) : 4096;
}

}  // namespace

int64_t comboForwardBlocksPerImage(const ComboConfig& config) {
  // About 64K blocks in all at most, at least one per image; each thread sums several elements.
  const int64_t perImage = config.numel / config.images;
  int64_t blocks = (perImage + kThreads * 8 - 1) / (kThreads * 8);
  const int64_t cap = 65535 / (config.images > 0 ? config.images : 1);
  if (blocks > 1024) blocks = 1024;
  if (blocks > cap) blocks = cap;
  return blocks > 0 ? blocks : 1;
}

void comboForward(const void* logits, const void* target, const ComboConfig& config, double* partials, double* coef,
                  void* loss, void* stream) {
  if (config.images <= 0 || config.images > 65535) throw std::runtime_error("comboForward: images must be in [1, 65535]");
  const int64_t blocks = comboForwardBlocksPerImage(config);
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(config.images));
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t perImage = config.numel / config.images;
  if (config.isDouble) {
    comboSumsKernel<double><<<grid, kThreads, 0, s>>>(static_cast<const double*>(logits), static_cast<const double*>(target),
                                                     perImage, partials);
    check("combo loss sums kernel");
    comboFinishKernel<double><<<1, kThreads, 0, s>>>(partials, blocks, config, coef, static_cast<double*>(loss));
  } else {
    comboSumsKernel<float><<<grid, kThreads, 0, s>>>(static_cast<const float*>(logits), static_cast<const float*>(target),
                                                    perImage, partials);
    check("combo loss sums kernel");
    comboFinishKernel<float><<<1, kThreads, 0, s>>>(partials, blocks, config, coef, static_cast<float*>(loss));
  }
  check("combo loss finish kernel");
}

void comboBackward(const void* logits, const void* target, const ComboConfig& config, const double* coef,
                   const void* gradOutput, void* grad, void* stream) {
  const auto blocks = static_cast<unsigned>(gridFor(config.numel));
  auto s = static_cast<cudaStream_t>(stream);
  if (config.isDouble) {
    comboGradKernel<double><<<blocks, kThreads, 0, s>>>(static_cast<const double*>(logits), static_cast<const double*>(target),
                                                       config, coef, static_cast<const double*>(gradOutput),
                                                       static_cast<double*>(grad));
  } else {
    comboGradKernel<float><<<blocks, kThreads, 0, s>>>(static_cast<const float*>(logits), static_cast<const float*>(target),
                                                      config, coef, static_cast<const float*>(gradOutput),
                                                      static_cast<float*>(grad));
  }
  check("combo loss gradient kernel");
}

}  // namespace pn::cuda
