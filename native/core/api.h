// The torch-free C++ API of pneumo-native's native core.
//
// The N-API layer (native/binding/*.cc) includes only this header and napi.h, so it compiles in seconds;
// everything that includes <torch/torch.h> lives in the core/*.cpp files behind it. Every function
// here either succeeds or throws pn::Error carrying LibTorch's message (never c10::Error, never
// an abort), so callers need to catch one exception type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace pn {

/** A LibTorch error (message without the C++ backtrace) or a failed argument check. */
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/** Element types that cross the boundary. Uint16 exists only on the JS side (widened to Int32). */
enum class DType : int32_t {
  Uint8 = 0,
  Int8,
  Int16,
  Int32,
  Int64,
  Float16,
  BFloat16,
  Float32,
  Float64,
  Bool,
};

const char* dtypeName(DType dtype);
/** Parses a dtype name ("float32", ...); returns false when unknown. */
bool parseDType(const std::string& name, DType* out);
size_t dtypeSize(DType dtype);

/** A reference-counted handle to an at::Tensor (copies share the same tensor). */
class Tensor {
 public:
  struct Impl;

  Tensor();
  explicit Tensor(std::shared_ptr<Impl> impl);
  ~Tensor();
  Tensor(const Tensor&);
  Tensor& operator=(const Tensor&);
  Tensor(Tensor&&) noexcept;
  Tensor& operator=(Tensor&&) noexcept;

  bool defined() const;
  std::vector<int64_t> shape() const;
  DType dtype() const;
  /** "cpu", "cuda:0", ... */
  std::string device() const;
  bool isCpu() const;
  int64_t numel() const;
  /** Bytes held by the elements of this tensor (numel * element size). */
  size_t nbytes() const;
  bool requiresGrad() const;

  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

// ---- creation and host transfer -------------------------------------------------------------

/**
 * Copies host memory of element type `srcType` into a new tensor of `dstType` on `device`, in
 * one pass (the conversion and the copy are fused when the types differ).
 */
Tensor fromHost(const void* data, size_t byteLength, DType srcType, const std::vector<int64_t>& shape,
                DType dstType, const std::string& device);

/** Copies (and converts) a tensor into host memory of `dstType` holding exactly numel elements. */
void toHost(const Tensor& tensor, void* dst, size_t byteLength, DType dstType);

/** Returns the tensor on `device` with `dtype` (no copy when both already match). */
Tensor to(const Tensor& tensor, const std::string& device, DType dtype);

enum class Fill { Zeros, Ones, Rand, Randn };
Tensor filled(Fill fill, const std::vector<int64_t>& shape, DType dtype, const std::string& device);

// ---- operations -------------------------------------------------------------------------------

enum class BinaryOp { Add, Sub, Mul, Div, Matmul };
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);

enum class ReduceOp { Sum, Mean, Max, Min };
/** Reduces over `dims` (all dims when empty). */
Tensor reduce(ReduceOp op, const Tensor& a, const std::vector<int64_t>& dims, bool keepDim);

Tensor reshape(const Tensor& a, const std::vector<int64_t>& shape);
Tensor clone(const Tensor& a);
/** The single value of a one-element tensor, as double. */
double item(const Tensor& a);

/**
 * Normalises an 8-bit image batch: (x / 255 - mean) / std as float32, on the tensor's device
 * (a fused CUDA kernel on GPU builds, one vectorised ATen expression on CPU).
 */
Tensor normalizeU8(const Tensor& images, float mean, float std);

// ---- runtime ------------------------------------------------------------------------------------

/** Sets the intra-op thread count of the compute thread (see native/binding/task.cc's ComputeThread). */
void setNumThreads(int threads);
int numThreads();
/** Applies the requested thread count to the calling thread (cheap; call before torch work). */
void syncThreads();
/**
 * Makes LibTorch run serially on the calling thread (an OpenMP team of one): for the main thread
 * and the libuv workers, so that the compute thread's team is the process's only one.
 */
void useSerialThread();
/** Seeds LibTorch's CPU and CUDA generators. */
void manualSeed(uint64_t seed);

struct CudaDevice {
  int index = 0;
  std::string name;
  int64_t totalMemory = 0;
  int major = 0;
  int minor = 0;
  int multiProcessors = 0;
};

struct RuntimeInfo {
  std::string torchVersion;
  bool builtWithCuda = false;
  bool cudaAvailable = false;
  int cudaDeviceCount = 0;
  bool cudnnAvailable = false;
  int64_t cudnnVersion = 0;
  std::vector<CudaDevice> cudaDevices;
  int intraOpThreads = 0;
  int interOpThreads = 0;
  bool mkldnn = false;
  bool openmp = false;
  std::string parallelInfo;
  std::string buildConfig;
};
/** cuDNN's process-wide switches: autotuning (benchmark) and deterministic algorithms. */
struct CudnnOptions {
  bool benchmark = false;
  bool deterministic = false;
  /** TF32 tensor-core math for float32 convolutions and matmuls (Ampere+). */
  bool allowTf32 = true;
};
/** Sets cuDNN autotuning, determinism (which turns autotuning off) and TF32 for cuDNN and cuBLAS. */
void setCudnnOptions(bool benchmark, bool deterministic, bool allowTf32);
CudnnOptions cudnnOptions();

/** The CUDA caching allocator's byte counts for one device (after a device synchronize). */
struct CudaMemoryStats {
  int64_t allocated = 0;
  int64_t peakAllocated = 0;
  int64_t reserved = 0;
  int64_t peakReserved = 0;
};
/** Reads the counts, then (with resetPeak) restarts the peaks from the current values. */
CudaMemoryStats cudaMemoryStats(int device, bool resetPeak);
RuntimeInfo runtimeInfo();

/** What the smoke forward/backward pass measured. */
struct SmokeResult {
  std::vector<double> losses;
  double msPerStep = 0;
  bool gradientsFinite = false;
  double gradientNorm = 0;
  int64_t parameters = 0;
  std::string device;
};
/**
 * Trains a tiny conv net on random images and masks for `steps` SGD steps: proves that the
 * forward pass, autograd and the optimizer work on this machine (and sets a CPU-time baseline).
 */
SmokeResult smokeTrain(int batch, int size, int steps, const std::string& device, uint64_t seed);

}  // namespace pn

namespace pn {
/** Copies unsigned 16-bit host data (no uint16 dtype in LibTorch 1.13) widened to `dstType`. */
Tensor fromHostUint16(const uint16_t* data, size_t count, const std::vector<int64_t>& shape, DType dstType,
                      const std::string& device);
}  // namespace pn

namespace pn {
/** Bytes held by large CPU tensor blocks (see cpu_allocator.cpp). */
struct CpuCacheStats {
  size_t liveBytes = 0;
  size_t cachedBytes = 0;
  size_t capBytes = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
};
/** Installs the caching CPU allocator for large blocks (idempotent; called at addon load). */
void installCpuAllocator();
CpuCacheStats cpuCacheStats();
/** Caps the bytes kept cached for reuse (trims at once if over). */
void setCpuCacheLimit(size_t bytes);
/** Returns every cached block to the operating system. */
void emptyCpuCache();
}  // namespace pn

namespace pn {
/** Uninitialised host memory from LibTorch's CPU allocator (the caching one for large blocks). */
void* allocHost(size_t bytes);
/** Frees memory from allocHost. */
void freeHost(void* data);
/**
 * The data pointer of a CPU tensor that could be handed to JS without a copy: contiguous, of
 * `dtype`, and the only owner of its storage. nullptr when any of that does not hold.
 */
void* exclusiveData(const Tensor& tensor, DType dtype);
}  // namespace pn
