// The fused combo loss (BCE + Dice + Focal, SPEC section 4) as a custom autograd function.
//
// The unfused composition reads and writes the whole batch about 25 times in the forward and
// 30 times in the backward (one temporary per elementwise op). Here the forward is one pass that
// computes the sigmoid once and accumulates every sum the three terms need, and the backward is
// one pass that writes dL/dlogits; nothing but a few scalars is kept between them.
//
// CPU: float32 runs a branch-free element kernel over stack blocks that the compiler vectorises
// (compiled twice on x86-64, for AVX2+FMA and for the baseline, picked at run time), with exp and
// log as polynomials; float64 uses the C library. Partial sums are taken per fixed chunk of one
// image and added in chunk order, so results do not depend on the thread count.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "combo_cuda.h"
#include "losses.h"
#ifdef PN_WITH_CUDA
#include "../core/cuda_ops.h"
#endif

#if defined(_MSC_VER)
#define PN_ALWAYS_INLINE __forceinline
#else
#define PN_ALWAYS_INLINE inline __attribute__((always_inline))
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PN_X86_DISPATCH 1
#endif

namespace pn::losses {
namespace {

constexpr double kDiceSmooth = 1e-6;
constexpr double kProbClamp = 1e-8;
constexpr double kMinLoss = 1e-5;
/** Elements per partial sum: fixed, so the order of additions never depends on threads. */
constexpr int64_t kChunk = 8192;
/** Elements per vectorised block (stack buffers). */
constexpr int kBlock = 256;
constexpr int kLanes = 8;

// ---- element math --------------------------------------------------------------------------

PN_ALWAYS_INLINE float asFloat(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

PN_ALWAYS_INLINE int32_t asBits(float f) {
  int32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

/**
 * c ? a : b as a bit blend. GCC turns a float ?: (and std::min/max, which must keep NaN) into a
 * branch, and with -ftrapping-math it will not speculate the float ops that then sit in one arm, so
 * the loop stays scalar; integer blends of values computed unconditionally vectorise.
 */
PN_ALWAYS_INLINE float select(bool c, float a, float b) {
  const int32_t mask = -static_cast<int32_t>(c);
  return asFloat((asBits(a) & mask) | (asBits(b) & ~mask));
}

PN_ALWAYS_INLINE double select(bool c, double a, double b) { return c ? a : b; }

/** 2 atanh(s) / s - 1 ... as the series sum_k s^2k / (2k + 1), enough terms for |s| <= 1/3. */
PN_ALWAYS_INLINE float atanhSeries(float w) {
  float r = 1.0f / 17.0f;
  r = r * w + 1.0f / 15.0f;
  r = r * w + 1.0f / 13.0f;
  r = r * w + 1.0f / 11.0f;
  r = r * w + 1.0f / 9.0f;
  r = r * w + 1.0f / 7.0f;
  r = r * w + 1.0f / 5.0f;
  r = r * w + 1.0f / 3.0f;
  return r * w + 1.0f;
}

template <typename T>
struct Math;

template <>
struct Math<float> {
  /** exp(y) for y <= 0 (clamped at -87 so the result stays a normal float): Cephes expf. */
  static PN_ALWAYS_INLINE float expNonPositive(float y) {
    y = select(y < -87.0f, -87.0f, y);  // NaN stays NaN
    const float n = (y * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
    float r = y - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    return p * asFloat((static_cast<int32_t>(n) + 127) << 23);
  }
  /** log(1 + e) for e in [0, 1], accurate for small e: 2 atanh(e / (2 + e)). */
  static PN_ALWAYS_INLINE float log1pUnit(float e) {
    const float s = e / (2.0f + e);
    return 2.0f * s * atanhSeries(s * s);
  }
  /** log(x) for normal positive x. */
  static PN_ALWAYS_INLINE float log(float x) {
    const int32_t bits = asBits(x);
    int32_t k = ((bits >> 23) & 0xff) - 127;
    float m = asFloat((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
    const bool big = m > 1.41421356f;
    const float half = m * 0.5f;
    m = select(big, half, m);
    k = big ? k + 1 : k;
    const float s = (m - 1.0f) / (m + 1.0f);
    const float kf = static_cast<float>(k);
    return kf * 0.693145751953125f + (2.0f * s * atanhSeries(s * s) + kf * 1.428606765330187e-06f);
  }
};

template <>
struct Math<double> {
  static PN_ALWAYS_INLINE double expNonPositive(double y) { return std::exp(y); }
  static PN_ALWAYS_INLINE double log1pUnit(double e) { return std::log1p(e); }
  static PN_ALWAYS_INLINE double log(double x) { return std::log(x); }
};

/**
 * Everything one pixel contributes, from its logit and target. Branch-free (selects only) so that
 * the loops over a block vectorise.
 */
template <typename T, bool kBinary, bool kGrad>
struct Pixel {
  T p, q, bce, focal, focalGrad;

  PN_ALWAYS_INLINE Pixel(T x, T t) {
    constexpr T lo = static_cast<T>(kProbClamp);
    const T one = 1, zero = 0;
    const T ax = std::abs(x);
    const T e = Math<T>::expNonPositive(-ax);
    const T inv = one / (one + e);
    const bool nonNegative = x >= zero;
    const T ei = e * inv;
    p = select(nonNegative, inv, ei);
    q = select(nonNegative, ei, inv);  // 1 - p without cancellation
    const T softplusBase = Math<T>::log1pUnit(e);
    const T relu = select(x > zero, x, zero);  // NaN stays NaN through x * t below
    bce = relu - x * t + softplusBase;
    // pc = clamp(p, lo, 1 - lo) and 1 - pc, both exact near either bound.
    const bool below = p < lo, above = q < lo;
    const T pc = select(below, lo, select(above, one - lo, p));
    const T qc = select(below, one - lo, select(above, lo, q));
    const T pt = (one - t) * qc + t * pc;
    const T omp = (one - t) * pc + t * qc;  // 1 - pt
    T logPt;
    if constexpr (kBinary) {
      // t in {0, 1}: log(pc) = -softplus(-x), log(1 - pc) = -softplus(x), clamped like pc.
      const T logLo = static_cast<T>(-18.420680743952367), logHi = static_cast<T>(-1.0000000050000001e-08);
      T logP = -((relu - x) + softplusBase);
      T logQ = -(relu + softplusBase);
      logP = select(logP < logLo, logLo, select(logP > logHi, logHi, logP));
      logQ = select(logQ < logLo, logLo, select(logQ > logHi, logHi, logQ));
      logPt = t * logP + (one - t) * logQ;
    } else {
      logPt = Math<T>::log(pt);
    }
    focal = -(omp * omp) * logPt;
    if constexpr (kGrad) {
      // d focal / dx = (2 (1 - pt) log pt - (1 - pt)^2 / pt) (2t - 1) p (1 - p), zero where clamped.
      const T inside = select((p >= lo) & (q >= lo), one, zero);
      focalGrad = inside * (2 * omp * logPt - omp * omp / pt) * (2 * t - one) * p * q;
    } else {
      focalGrad = zero;
    }
  }
};

/** Sums over one chunk: BCE, focal, p*t, p, t. */
template <typename T>
PN_ALWAYS_INLINE void forwardChunk(const T* x, const T* t, int64_t n, double* out) {
  double total[5] = {0, 0, 0, 0, 0};
  T bce[kBlock], focal[kBlock], prob[kBlock];
  for (int64_t start = 0; start < n; start += kBlock) {
    const int len = static_cast<int>(std::min<int64_t>(kBlock, n - start));
    const T* xs = x + start;
    const T* ts = t + start;
    int soft = 0;
    for (int i = 0; i < len; ++i) soft += (ts[i] != T(0)) & (ts[i] != T(1));
    if (soft == 0) {
      for (int i = 0; i < len; ++i) {
        const Pixel<T, true, false> px(xs[i], ts[i]);
        bce[i] = px.bce;
        focal[i] = px.focal;
        prob[i] = px.p;
      }
    } else {
      for (int i = 0; i < len; ++i) {
        const Pixel<T, false, false> px(xs[i], ts[i]);
        bce[i] = px.bce;
        focal[i] = px.focal;
        prob[i] = px.p;
      }
    }
    // Lane-wise accumulation (vectorises without reassociating a single sum).
    T acc[5][kLanes] = {};
    const int whole = len / kLanes * kLanes;
    for (int i = 0; i < whole; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        acc[0][l] += bce[i + l];
        acc[1][l] += focal[i + l];
        acc[2][l] += prob[i + l] * ts[i + l];
        acc[3][l] += prob[i + l];
        acc[4][l] += ts[i + l];
      }
    }
    for (int i = whole; i < len; ++i) {
      acc[0][0] += bce[i];
      acc[1][0] += focal[i];
      acc[2][0] += prob[i] * ts[i];
      acc[3][0] += prob[i];
      acc[4][0] += ts[i];
    }
    for (int s = 0; s < 5; ++s) {
      double block = 0;
      for (int l = 0; l < kLanes; ++l) block += static_cast<double>(acc[s][l]);
      total[s] += block;
    }
  }
  for (int s = 0; s < 5; ++s) out[s] = total[s];
}

/** What the backward needs per element besides the logit and target. */
struct GradCoef {
  double local;  // go / N (BCE and focal are means over every pixel)
  double bce, focal;
  double diceA, diceB;  // go * wd * dDice/dp = diceA * t + diceB (per image)
};

template <typename T>
PN_ALWAYS_INLINE void backwardChunk(const T* x, const T* t, T* g, int64_t n, const GradCoef& c) {
  const T wb = static_cast<T>(c.local * c.bce), wf = static_cast<T>(c.local * c.focal);
  const T da = static_cast<T>(c.diceA), db = static_cast<T>(c.diceB);
  for (int64_t start = 0; start < n; start += kBlock) {
    const int len = static_cast<int>(std::min<int64_t>(kBlock, n - start));
    const T* xs = x + start;
    const T* ts = t + start;
    T* gs = g + start;
    int soft = 0;
    for (int i = 0; i < len; ++i) soft += (ts[i] != T(0)) & (ts[i] != T(1));
    if (soft == 0) {
      for (int i = 0; i < len; ++i) {
        const Pixel<T, true, true> px(xs[i], ts[i]);
        gs[i] = wb * (px.p - ts[i]) + wf * px.focalGrad + (da * ts[i] + db) * px.p * px.q;
      }
    } else {
      for (int i = 0; i < len; ++i) {
        const Pixel<T, false, true> px(xs[i], ts[i]);
        gs[i] = wb * (px.p - ts[i]) + wf * px.focalGrad + (da * ts[i] + db) * px.p * px.q;
      }
    }
  }
}

// float32 kernels, compiled for the baseline ISA and (on x86-64) for AVX2 + FMA.
void forwardFloatBase(const float* x, const float* t, int64_t n, double* out) { forwardChunk<float>(x, t, n, out); }
void backwardFloatBase(const float* x, const float* t, float* g, int64_t n, const GradCoef& c) {
  backwardChunk<float>(x, t, g, n, c);
}
#ifdef PN_X86_DISPATCH
__attribute__((target("avx2,fma"))) void forwardFloatAvx2(const float* x, const float* t, int64_t n, double* out) {
  forwardChunk<float>(x, t, n, out);
}
__attribute__((target("avx2,fma"))) void backwardFloatAvx2(const float* x, const float* t, float* g, int64_t n,
                                                             const GradCoef& c) {
  backwardChunk<float>(x, t, g, n, c);
}
bool hasAvx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

void forwardRange(const float* x, const float* t, int64_t n, double* out) {
#ifdef PN_X86_DISPATCH
  if (hasAvx2()) return forwardFloatAvx2(x, t, n, out);
#endif
  forwardFloatBase(x, t, n, out);
}
void forwardRange(const double* x, const double* t, int64_t n, double* out) { forwardChunk<double>(x, t, n, out); }
void backwardRange(const float* x, const float* t, float* g, int64_t n, const GradCoef& c) {
#ifdef PN_X86_DISPATCH
  if (hasAvx2()) return backwardFloatAvx2(x, t, g, n, c);
#endif
  backwardFloatBase(x, t, g, n, c);
}
void backwardRange(const double* x, const double* t, double* g, int64_t n, const GradCoef& c) {
  backwardChunk<double>(x, t, g, n, c);
}

/** Chunks never straddle two images, so per-image sums come from the same pass. */
struct ChunkPlan {
  int64_t perImage, chunksPerImage;
  ChunkPlan(int64_t numel, int64_t images) : perImage(numel / images), chunksPerImage((numel / images + kChunk - 1) / kChunk) {}
  int64_t begin(int64_t c) const { return c / chunksPerImage * perImage + c % chunksPerImage * kChunk; }
  int64_t length(int64_t c) const { return std::min(kChunk, perImage - c % chunksPerImage * kChunk); }
  int64_t image(int64_t c) const { return c / chunksPerImage; }
};

/**
 * Runs fn(chunk) for every chunk on LibTorch's intra-op threads, each thread taking the next chunk
 * as it finishes one: a thread that the OS preempts (a busy machine) delays only the chunk it holds,
 * not a fixed half of the work. Chunks write their own slots, so the result is the same whatever
 * thread ran them.
 */
template <typename Fn>
void forEachChunk(int64_t chunks, const Fn& fn) {
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), chunks));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < chunks; c = next.fetch_add(1, std::memory_order_relaxed)) fn(c);
  });
}

/** Per-image sums [images][5] of the CPU forward. */
template <typename T>
std::vector<double> cpuSums(const at::Tensor& logits, const at::Tensor& target, int64_t images) {
  const ChunkPlan plan(logits.numel(), images);
  const int64_t chunks = plan.chunksPerImage * images;
  std::vector<double> partial(static_cast<size_t>(chunks) * 5);
  const T* x = logits.data_ptr<T>();
  const T* t = target.data_ptr<T>();
  forEachChunk(chunks, [&](int64_t c) { forwardRange(x + plan.begin(c), t + plan.begin(c), plan.length(c), &partial[c * 5]); });
  std::vector<double> sums(static_cast<size_t>(images) * 5, 0.0);
  for (int64_t c = 0; c < chunks; ++c) {
    for (int s = 0; s < 5; ++s) sums[plan.image(c) * 5 + s] += partial[c * 5 + s];
  }
  return sums;
}

/** The loss and the backward coefficients (images * 2 + 1: diceA, diceB per image, then pass). */
double finishCpu(const std::vector<double>& sums, int64_t images, int64_t numel, const ComboOptions& o,
                 std::vector<double>* coef) {
  double bce = 0, focal = 0;
  for (int64_t b = 0; b < images; ++b) {
    bce += sums[b * 5 + 0];
    focal += sums[b * 5 + 1];
  }
  bce /= static_cast<double>(numel);
  focal /= static_cast<double>(numel);
  coef->assign(static_cast<size_t>(images) * 2 + 1, 0.0);
  double dice = 0;
  const auto diceOf = [&](double inter, double unionSum, double scale, double* a, double* b) {
    const double den = unionSum + kDiceSmooth;
    const double num = 2 * inter + kDiceSmooth;
    *a = -scale * o.diceWeight * 2 / den;
    *b = scale * o.diceWeight * num / (den * den);
    return 1 - num / den;
  };
  if (o.perImageDice) {
    for (int64_t b = 0; b < images; ++b) {
      const double* s = &sums[b * 5];
      dice += diceOf(s[2], s[3] + s[4], 1.0 / static_cast<double>(images), &(*coef)[b * 2], &(*coef)[b * 2 + 1]);
    }
    dice /= static_cast<double>(images);
  } else {
    double inter = 0, unionSum = 0;
    for (int64_t b = 0; b < images; ++b) {
      inter += sums[b * 5 + 2];
      unionSum += sums[b * 5 + 3] + sums[b * 5 + 4];
    }
    double a = 0, bb = 0;
    dice = diceOf(inter, unionSum, 1.0, &a, &bb);
    for (int64_t b = 0; b < images; ++b) {
      (*coef)[b * 2] = a;
      (*coef)[b * 2 + 1] = bb;
    }
  }
  const double total = o.bceWeight * bce + o.diceWeight * dice + o.focalWeight * focal;
  // clamp_min passes the gradient where the input is >= the bound (and NaN stays NaN).
  (*coef)[images * 2] = total >= kMinLoss || std::isnan(total) ? 1.0 : 0.0;
  return std::isnan(total) ? total : std::max(total, kMinLoss);
}

template <typename T>
void cpuBackward(const at::Tensor& logits, const at::Tensor& target, at::Tensor& grad, int64_t images,
                 const double* coef, double gradOutput, const ComboOptions& o) {
  const ChunkPlan plan(logits.numel(), images);
  const int64_t chunks = plan.chunksPerImage * images;
  const T* x = logits.data_ptr<T>();
  const T* t = target.data_ptr<T>();
  T* g = grad.data_ptr<T>();
  const double go = gradOutput * coef[images * 2];
  forEachChunk(chunks, [&](int64_t c) {
    const int64_t b = plan.image(c);
    const GradCoef gc{go / static_cast<double>(logits.numel()), o.bceWeight, o.focalWeight, go * coef[b * 2], go * coef[b * 2 + 1]};
    backwardRange(x + plan.begin(c), t + plan.begin(c), g + plan.begin(c), plan.length(c), gc);
  });
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct ComboLossFunction : public torch::autograd::Function<ComboLossFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& target, double bceWeight,
                            double diceWeight, double focalWeight, bool perImageDice) {
    const ComboOptions o{bceWeight, diceWeight, focalWeight, perImageDice};
    const int64_t images = logits.size(0);
    at::Tensor loss, coef;
    if (logits.is_cuda()) {
#ifdef PN_WITH_CUDA
      const c10::DeviceGuard deviceGuard(logits.device());  // kernels launch on the current device
      cuda::ComboConfig config;
      config.numel = logits.numel();
      config.images = images;
      config.bceWeight = bceWeight;
      config.diceWeight = diceWeight;
      config.focalWeight = focalWeight;
      config.perImageDice = perImageDice;
      config.isDouble = logits.scalar_type() == at::kDouble;
      const auto doubles = logits.options().dtype(at::kDouble);
      at::Tensor partials = at::empty({images * cuda::comboForwardBlocksPerImage(config) * 5}, doubles);
      coef = at::empty({images * 2 + 1}, doubles);
      loss = at::empty({}, logits.options());
      cuda::comboForward(logits.data_ptr(), target.data_ptr(), config, partials.data_ptr<double>(), coef.data_ptr<double>(),
                         loss.data_ptr(), cuda::currentStream(logits.get_device()));
#else
      TORCH_CHECK(false, "comboLoss: this build has no CUDA kernels");
#endif
    } else {
      std::vector<double> sums = logits.scalar_type() == at::kDouble ? cpuSums<double>(logits, target, images)
                                                                     : cpuSums<float>(logits, target, images);
      std::vector<double> c;
      const double value = finishCpu(sums, images, logits.numel(), o, &c);
      loss = at::scalar_tensor(value, logits.options());
      coef = at::tensor(c, at::TensorOptions().dtype(at::kDouble));
    }
    ctx->save_for_backward({logits, target, coef});
    ctx->saved_data["bce"] = bceWeight;
    ctx->saved_data["dice"] = diceWeight;
    ctx->saved_data["focal"] = focalWeight;
    ctx->saved_data["perImage"] = perImageDice;
    return loss;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list gradOutputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& logits = saved[0];
    const at::Tensor& target = saved[1];
    const at::Tensor& coef = saved[2];
    const ComboOptions o{ctx->saved_data["bce"].toDouble(), ctx->saved_data["dice"].toDouble(),
                         ctx->saved_data["focal"].toDouble(), ctx->saved_data["perImage"].toBool()};
    const int64_t images = logits.size(0);
    at::Tensor grad = at::empty_like(logits, at::MemoryFormat::Contiguous);
    if (logits.is_cuda()) {
#ifdef PN_WITH_CUDA
      const c10::DeviceGuard deviceGuard(logits.device());
      cuda::ComboConfig config;
      config.numel = logits.numel();
      config.images = images;
      config.bceWeight = o.bceWeight;
      config.diceWeight = o.diceWeight;
      config.focalWeight = o.focalWeight;
      config.perImageDice = o.perImageDice;
      config.isDouble = logits.scalar_type() == at::kDouble;
      const at::Tensor go = gradOutputs[0].to(logits.scalar_type()).contiguous();
      cuda::comboBackward(logits.data_ptr(), target.data_ptr(), config, coef.data_ptr<double>(), go.data_ptr(),
                          grad.data_ptr(), cuda::currentStream(logits.get_device()));
#endif
    } else {
      const double go = gradOutputs[0].item<double>();
      if (logits.scalar_type() == at::kDouble) {
        cpuBackward<double>(logits, target, grad, images, coef.data_ptr<double>(), go, o);
      } else {
        cpuBackward<float>(logits, target, grad, images, coef.data_ptr<double>(), go, o);
      }
    }
    return {grad, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

/** Checks shapes and brings logits and target to a common contiguous float/double dtype. */
std::pair<at::Tensor, at::Tensor> prepareLossInputs(const char* name, const at::Tensor& logits, const at::Tensor& target) {
  TORCH_CHECK(logits.defined() && target.defined(), name, ": logits and target must be defined tensors");
  TORCH_CHECK(logits.dim() >= 1 && logits.numel() > 0, name, ": logits must be a non-empty tensor with a batch dimension, got shape ",
              logits.sizes());
  TORCH_CHECK(logits.sizes() == target.sizes(), name, ": target shape ", target.sizes(), " does not match logits shape ",
              logits.sizes());
  TORCH_CHECK(logits.device() == target.device(), name, ": target is on ", target.device(), " but logits are on ",
              logits.device());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), name, ": logits must be a floating-point tensor, got ",
              logits.scalar_type());
  at::Tensor x = logits.scalar_type() == at::kDouble ? logits : logits.to(at::kFloat);
  at::Tensor t = target.detach().to(x.scalar_type());
  return {x.contiguous(), t.contiguous()};
}

at::Tensor comboLoss(const at::Tensor& logits, const at::Tensor& target, const ComboOptions& options) {
  auto [x, t] = prepareLossInputs("comboLoss", logits, target);
  return ComboLossFunction::apply(x, t, options.bceWeight, options.diceWeight, options.focalWeight, options.perImageDice);
}

at::Tensor comboLossReference(const at::Tensor& logits, const at::Tensor& target, const ComboOptions& options) {
  auto [x, t] = prepareLossInputs("comboLossReference", logits, target);
  const at::Tensor p = torch::sigmoid(x);
  const at::Tensor bce = torch::binary_cross_entropy_with_logits(x, t);
  at::Tensor dice;
  if (options.perImageDice) {
    const int64_t images = x.size(0);
    const at::Tensor pi = p.reshape({images, -1}), ti = t.reshape({images, -1});
    dice = (1 - (2 * (pi * ti).sum(1) + kDiceSmooth) / (pi.sum(1) + ti.sum(1) + kDiceSmooth)).mean();
  } else {
    dice = 1 - (2 * (p * t).sum() + kDiceSmooth) / (p.sum() + t.sum() + kDiceSmooth);
  }
  const at::Tensor pc = p.clamp(kProbClamp, 1 - kProbClamp);
  const at::Tensor pt = (1 - t) * (1 - pc) + t * pc;
  const at::Tensor focal = (-(1 - pt).pow(2) * pt.log()).mean();
  return (options.bceWeight * bce + options.diceWeight * dice + options.focalWeight * focal).clamp_min(kMinLoss);
}

}  // namespace pn::losses
