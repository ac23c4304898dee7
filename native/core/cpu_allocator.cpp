// A caching allocator for large CPU tensors, installed as LibTorch's CPU allocator.
//
// Why: with glibc malloc, a freed multi-megabyte tensor block is split by the small, long-lived
// allocations a Node process makes between tensors (N-API wrappers wait for GC), so the heap
// grows without bound when tensors are created and disposed in a loop (measured: +1 MB per
// 1 MB tensor). Large blocks here come from mmap, are kept in a size-keyed free list for reuse
// (so a training step's activations cost no page faults after the first step) and are unmapped
// when the cache would exceed its cap, so RSS goes back down. Small blocks use LibTorch's default.
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

#include "torch_compat.h"
#include "torch_internal.h"

namespace pn {

namespace {

constexpr size_t kMinCachedBytes = 256 * 1024;
constexpr size_t kPage = 64 * 1024;

size_t roundBlock(size_t n) {
  // 64 KiB granularity up to 8 MiB, then 1/16 of the next power of two: bounded waste, few classes.
  if (n <= 8u * 1024 * 1024) return (n + kPage - 1) / kPage * kPage;
  size_t p = 1;
  while (p < n) p <<= 1;
  const size_t step = p / 16;
  return (n + step - 1) / step * step;
}

size_t defaultCapBytes() {
  if (const char* env = std::getenv("PNEUMO_CPU_CACHE_MB")) {
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(env, &end, 10);
    if (end != env) return static_cast<size_t>(mb) * 1024 * 1024;
  }
  // A quarter of physical memory, at least 1 GiB: a 512 px EfficientNet-B5 UNet step at batch 2
  // cycles through ~5 GB of activations, and a cap below a step's working set makes every step
  // unmap and fault its largest blocks again (measured at 256 px, unet_ef5: 7 misses per step and
  // 600-660 ms/image with a 1 GiB cap against 0 misses and 480-580 with 4 GiB).
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long pageSize = sysconf(_SC_PAGESIZE);
  const size_t physical = pages > 0 && pageSize > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(pageSize) : 0;
  return std::max(size_t{1024} * 1024 * 1024, physical / 4);
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  CachingCpuAllocator() : capBytes_(defaultCapBytes()) {}

  c10::DataPtr allocate(size_t n) PN_ALLOCATE_CONST override {
    if (n < kMinCachedBytes) return fallback()->allocate(n);
    void* p = const_cast<CachingCpuAllocator*>(this)->take(roundBlock(n));
    return {p, p, &CachingCpuAllocator::deleteBlock, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &CachingCpuAllocator::deleteBlock; }

#if PN_ALLOCATOR_HAS_COPY_DATA
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#endif

  static void deleteBlock(void* p) { instance().give(p); }

  static CachingCpuAllocator& instance() {
    static CachingCpuAllocator* allocator = new CachingCpuAllocator();  // never destroyed: tensors may outlive statics
    return *allocator;
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {liveBytes_, cachedBytes_, capBytes_, hits_, misses_};
  }

  void setCap(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    capBytes_ = bytes;
    trimLocked(capBytes_);
  }

  void emptyCache() {
    std::lock_guard<std::mutex> lock(mutex_);
    trimLocked(0);
  }

 private:
  static c10::Allocator* fallback() { return c10::GetDefaultCPUAllocator(); }

  void* take(size_t size) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // Reuse the smallest cached block that fits without wasting more than a quarter.
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= size + size / 4) {
        void* p = it->second;
        const size_t blockSize = it->first;
        free_.erase(it);
        cachedBytes_ -= blockSize;
        liveBytes_ += blockSize;
        sizes_[p] = blockSize;
        ++hits_;
        return p;
      }
      ++misses_;
    }
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      // Out of address space or memory: free the cache and try once more before failing.
      emptyCache();
      p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw Error("out of memory: could not allocate " + std::to_string(size >> 20) + " MiB for a CPU tensor");
    }
#ifdef MADV_HUGEPAGE
    if (size >= 4u * 1024 * 1024) madvise(p, size, MADV_HUGEPAGE);
#endif
    std::lock_guard<std::mutex> lock(mutex_);
    liveBytes_ += size;
    sizes_[p] = size;
    return p;
  }

  void give(void* p) {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) {
      c10::free_cpu(p);  // a small block handed out through raw_allocate by the fallback
      return;
    }
    const size_t size = it->second;
    sizes_.erase(it);
    liveBytes_ -= size;
    if (cachedBytes_ + size > capBytes_) trimLocked(capBytes_ > size ? capBytes_ - size : 0);
    if (cachedBytes_ + size <= capBytes_) {
      free_.emplace(size, p);
      cachedBytes_ += size;
    } else {
      munmap(p, size);
    }
  }

  void trimLocked(size_t target) {
    // Largest blocks first: they free the most memory per system call.
    while (cachedBytes_ > target && !free_.empty()) {
      auto it = std::prev(free_.end());
      munmap(it->second, it->first);
      cachedBytes_ -= it->first;
      free_.erase(it);
    }
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> sizes_;
  size_t liveBytes_ = 0;
  size_t cachedBytes_ = 0;
  size_t capBytes_;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace

void installCpuAllocator() {
  static std::once_flag once;
  std::call_once(once, [] { c10::SetCPUAllocator(&CachingCpuAllocator::instance(), /*priority=*/10); });
}

CpuCacheStats cpuCacheStats() { return CachingCpuAllocator::instance().stats(); }

void setCpuCacheLimit(size_t bytes) { CachingCpuAllocator::instance().setCap(bytes); }

void emptyCpuCache() { CachingCpuAllocator::instance().emptyCache(); }

}  // namespace pn
