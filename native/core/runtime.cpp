// Process-wide runtime: threads, seeding, the build/device report and the smoke training pass.
#include <ATen/Parallel.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <torch/version.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>

#include "cuda_ops.h"
#include "torch_internal.h"

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

#ifdef PN_WITH_CUDA
// c10/cuda and the CUDA runtime only: ATen/cuda/CUDAContext.h would pull in cuBLAS, cuSPARSE and
// cuSOLVER headers, which a CUDA toolkit without those libraries (or the header-only compile test)
// does not have.
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace pn {

namespace {
std::atomic<int> gRequestedThreads{0};
}

void setNumThreads(int threads) {
  if (threads < 1) throw Error("thread count must be >= 1, got " + std::to_string(threads));
  gRequestedThreads.store(threads);
  guard([&] {
    at::set_num_threads(threads);  // the default for threads that start LibTorch work later
    return 0;
  });
  useSerialThread();  // the caller (the JavaScript thread) itself stays serial
}

void useSerialThread() {
#ifdef _OPENMP
  // ATen initialises each thread's count lazily on its first parallel call (to the global count):
  // let it do so first, or that first call would undo this.
  (void)at::get_num_threads();
  omp_set_num_threads(1);
#endif
}

int numThreads() {
  const int requested = gRequestedThreads.load();
  return requested > 0 ? requested : at::get_num_threads();
}

void syncThreads() {
  // With the OpenMP backend the thread count is per calling thread: a libuv worker that ran torch
  // code before a later setNumThreads() would otherwise keep the old count.
  const int requested = gRequestedThreads.load();
  if (requested > 0 && at::get_num_threads() != requested) at::set_num_threads(requested);
}

void setCudnnOptions(bool benchmark, bool deterministic, bool allowTf32) {
  guard([&] {
    at::globalContext().setBenchmarkCuDNN(benchmark && !deterministic);
    at::globalContext().setDeterministicCuDNN(deterministic);
    // Deterministic implementations of every op that has one; ops without one (bilinear upsampling's
    // CUDA backward, as in PyTorch) warn once instead of failing. cuBLAS needs a fixed workspace.
    at::globalContext().setDeterministicAlgorithms(deterministic, /*warn_only=*/true);
    if (deterministic) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0);
    at::globalContext().setAllowTF32CuDNN(allowTf32);
    at::globalContext().setAllowTF32CuBLAS(allowTf32);
    return 0;
  });
}

CudnnOptions cudnnOptions() {
  return {at::globalContext().benchmarkCuDNN(), at::globalContext().deterministicCuDNN(), at::globalContext().allowTF32CuDNN()};
}

CudaMemoryStats cudaMemoryStats(int device, bool resetPeak) {
  return guard([&] {
    CudaMemoryStats out;
#ifdef PN_WITH_CUDA
    if (!torch::cuda::is_available() || device < 0 || device >= static_cast<int>(torch::cuda::device_count())) {
      throw Error("CUDA device " + std::to_string(device) + " is not available");
    }
    const auto index = static_cast<c10::DeviceIndex>(device);
    c10::cuda::device_synchronize();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    constexpr size_t aggregate = 0;  // StatType::AGGREGATE (the enum moved namespaces in LibTorch 2.x)
    out.allocated = stats.allocated_bytes[aggregate].current;
    out.peakAllocated = stats.allocated_bytes[aggregate].peak;
    out.reserved = stats.reserved_bytes[aggregate].current;
    out.peakReserved = stats.reserved_bytes[aggregate].peak;
    if (resetPeak) c10::cuda::CUDACachingAllocator::resetPeakStats(index);
#else
    throw Error("this build of pneumo-native has no CUDA support (CUDA device " + std::to_string(device) + ")");
#endif
    return out;
  });
}

void manualSeed(uint64_t seed) {
  guard([&] {
    torch::manual_seed(seed);
    return 0;
  });
}

RuntimeInfo runtimeInfo() {
  return guard([] {
    RuntimeInfo info;
    info.torchVersion = TORCH_VERSION;
#ifdef PN_WITH_CUDA
    info.builtWithCuda = true;
#endif
    info.cudaAvailable = torch::cuda::is_available();
    info.cudaDeviceCount = info.cudaAvailable ? static_cast<int>(torch::cuda::device_count()) : 0;
    info.cudnnAvailable = info.cudaAvailable && torch::cuda::cudnn_is_available();
#ifdef PN_WITH_CUDA
    if (info.cudnnAvailable) info.cudnnVersion = at::detail::getCUDAHooks().versionCuDNN();
    for (int i = 0; i < info.cudaDeviceCount; ++i) {
      cudaDeviceProp prop{};
      if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) throw Error("could not read the properties of CUDA device " + std::to_string(i));
      info.cudaDevices.push_back(CudaDevice{i, prop.name, static_cast<int64_t>(prop.totalGlobalMem), prop.major, prop.minor,
                                            prop.multiProcessorCount});
    }
#endif
    syncThreads();
    info.intraOpThreads = at::get_num_threads();
    info.interOpThreads = at::get_num_interop_threads();
    info.mkldnn = at::hasMKLDNN();
    info.openmp = at::hasOpenMP();
    info.parallelInfo = at::get_parallel_info();
    info.buildConfig = at::show_config();
    return info;
  });
}

#ifdef PN_WITH_CUDA
namespace cuda {
void* currentStream(int device) { return at::cuda::getCurrentCUDAStream(device).stream(); }
}  // namespace cuda
#endif

namespace {

// A three-layer fully convolutional net: small enough to run anywhere, deep enough that a
// broken autograd, optimizer or convolution backend shows up as a non-decreasing loss.
struct SmokeNetImpl : torch::nn::Module {
  SmokeNetImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).padding(1).bias(false)))),
        bn1(register_module("bn1", torch::nn::BatchNorm2d(8))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 3).padding(1)))),
        head(register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 1, 1)))) {}

  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::relu(bn1(conv1(x)));
    y = torch::relu(conv2(y));
    return head(y);
  }

  torch::nn::Conv2d conv1;
  torch::nn::BatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  torch::nn::Conv2d head;
};
TORCH_MODULE(SmokeNet);

}  // namespace

SmokeResult smokeTrain(int batch, int size, int steps, const std::string& device, uint64_t seed) {
  if (batch < 1 || size < 4 || steps < 1) throw Error("smokeTrain needs batch >= 1, size >= 4 and steps >= 1");
  return guard([&] {
    syncThreads();
    const at::Device dev = parseDevice(device);
    torch::manual_seed(seed);
    SmokeNet net;
    net->to(dev);
    torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
    // A learnable target: the mask is where the image is bright.
    auto images = torch::randn({batch, 1, size, size}, torch::TensorOptions().device(dev));
    auto masks = (images > 0.5).to(torch::kFloat);

    SmokeResult result;
    result.device = dev.str();
    for (const auto& p : net->parameters()) result.parameters += p.numel();
    const auto start = std::chrono::steady_clock::now();
    for (int step = 0; step < steps; ++step) {
      optimizer.zero_grad();
      auto loss = torch::binary_cross_entropy_with_logits(net->forward(images), masks);
      loss.backward();
      if (step == steps - 1) {
        double sq = 0;
        bool finite = true;
        for (const auto& p : net->parameters()) {
          const auto g = p.grad();
          if (!g.defined()) continue;
          finite = finite && torch::isfinite(g).all().item<bool>();
          sq += g.pow(2).sum().item<double>();
        }
        result.gradientsFinite = finite;
        result.gradientNorm = std::sqrt(sq);
      }
      optimizer.step();
      result.losses.push_back(loss.item<double>());
    }
    const auto elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    result.msPerStep = elapsed / steps;
    return result;
  });
}

}  // namespace pn
