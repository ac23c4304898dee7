// Batch image decoding for the data path (see data_api.h).
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "../core/torch_internal.h"
#include "data_api.h"
#include "dicom_scan.h"
#include "png_decode.h"
#include "store_api.h"

#ifdef PN_WITH_CUDA
// c10/cuda and the CUDA runtime only (as core/runtime.cpp): no ATen/cuda/CUDAContext.h.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

#ifdef PN_WITH_TURBOJPEG
#include <turbojpeg.h>
#endif

namespace pn::data {

bool hasTurboJpeg() {
#ifdef PN_WITH_TURBOJPEG
  return true;
#else
  return false;
#endif
}

namespace {

/** Bilinear resize (half-pixel centres, like OpenCV INTER_LINEAR / align_corners=false) into dst. */
void resizeBilinear(const uint8_t* src, int sw, int sh, float* dst, int size) {
  const float sx = static_cast<float>(sw) / size;
  const float sy = static_cast<float>(sh) / size;
  std::vector<int> x0(size), x1(size);
  std::vector<float> fx(size);
  for (int x = 0; x < size; ++x) {
    const float s = std::max(0.0f, (x + 0.5f) * sx - 0.5f);
    const int i = std::min(static_cast<int>(s), sw - 1);
    x0[x] = i;
    x1[x] = std::min(i + 1, sw - 1);
    fx[x] = s - i;
  }
  for (int y = 0; y < size; ++y) {
    const float s = std::max(0.0f, (y + 0.5f) * sy - 0.5f);
    const int j = std::min(static_cast<int>(s), sh - 1);
    const int j1 = std::min(j + 1, sh - 1);
    const float fy = s - j;
    const uint8_t* r0 = src + static_cast<size_t>(j) * sw;
    const uint8_t* r1 = src + static_cast<size_t>(j1) * sw;
    float* out = dst + static_cast<size_t>(y) * size;
    for (int x = 0; x < size; ++x) {
      const float top = r0[x0[x]] + (r0[x1[x]] - r0[x0[x]]) * fx[x];
      const float bottom = r1[x0[x]] + (r1[x1[x]] - r1[x0[x]]) * fx[x];
      out[x] = top + (bottom - top) * fy;
    }
  }
}

/** Per-channel float scale and shift of a normalised batch: x * scale[c] + shift[c]. */
struct Affine {
  std::vector<float> scale, shift;
};

/**
 * The constants of each output channel. Quantized batches reproduce a uint8 batch normalised by
 * augmentBatch's Normalize: 1 / (255 std) and -mean / std computed in double and rounded to float.
 * Others reproduce the float arithmetic this path has always used (decodeBatch's normalisation).
 */
Affine affineOf(const BatchOptions& options) {
  Affine a;
  for (int c = 0; c < options.channels(); ++c) {
    const double mean = options.channelMean.empty() ? options.mean : options.channelMean[static_cast<size_t>(c)];
    const double std = options.channelStd.empty() ? options.std : options.channelStd[static_cast<size_t>(c)];
    if (options.quantize) {
      a.scale.push_back(static_cast<float>(1.0 / (255.0 * std)));
      a.shift.push_back(static_cast<float>(-mean / std));
    } else {
      const float m = static_cast<float>(mean), s = static_cast<float>(std);
      a.scale.push_back(1.0f / (255.0f * s));
      a.shift.push_back(-m / s);
    }
  }
  return a;
}

/** The rounded 8-bit value of a resized pixel (the uint8 batches' rounding). */
inline uint8_t toByte(float v) { return static_cast<uint8_t>(std::clamp(v + 0.5f, 0.0f, 255.0f)); }

/**
 * Writes `count` pixel values (float resized, or exact uint8) to the slot's channel planes,
 * normalised. Quantized: the 8-bit value times scale plus shift rounded once (exact in double for
 * an 8-bit value), as ATen's vectorised addcmul computes it with FMA; else float multiply and add.
 */
template <typename T>
void storeNormalized(const T* values, size_t count, const BatchOptions& options, void* slot) {
  const Affine a = affineOf(options);
  float* out = static_cast<float*>(slot);
  for (size_t c = 0; c < a.scale.size(); ++c) {
    const float scale = a.scale[c];
    const float shift = a.shift[c];
    float* plane = out + c * count;
    if (options.quantize) {
      const double dscale = scale, dshift = shift;
      for (size_t i = 0; i < count; ++i) {
        uint8_t byte;
        if constexpr (std::is_same_v<T, float>) {
          byte = toByte(values[i]);
        } else {
          byte = values[i];
        }
        plane[i] = static_cast<float>(static_cast<double>(byte) * dscale + dshift);
      }
    } else {
      for (size_t i = 0; i < count; ++i) plane[i] = static_cast<float>(values[i]) * scale + shift;
    }
  }
}

/** Writes `count` float pixel values to the output slot as uint8 or normalised float32. */
void store(const float* values, size_t count, const BatchOptions& options, void* slot) {
  if (options.normalize) {
    storeNormalized(values, count, options, slot);
  } else if (options.threshold) {
    // The rounded value (as the uint8 branch below) at or above 128: inside.
    uint8_t* out = static_cast<uint8_t*>(slot);
    for (size_t i = 0; i < count; ++i) out[i] = values[i] + 0.5f >= 128.0f ? 255 : 0;
  } else {
    uint8_t* out = static_cast<uint8_t*>(slot);
    for (size_t i = 0; i < count; ++i) out[i] = toByte(values[i]);
  }
}

void storeExact(const uint8_t* pixels, size_t count, const BatchOptions& options, void* slot) {
  if (options.normalize) {
    storeNormalized(pixels, count, options, slot);
  } else if (options.threshold) {
    uint8_t* out = static_cast<uint8_t*>(slot);
    for (size_t i = 0; i < count; ++i) out[i] = pixels[i] >= 128 ? 255 : 0;
  } else {
    std::copy(pixels, pixels + count, static_cast<uint8_t*>(slot));
  }
}

#ifdef PN_WITH_TURBOJPEG
struct TjHandle {
  tjhandle handle = tjInitDecompress();
  ~TjHandle() {
    if (handle) tjDestroy(handle);
  }
};

/**
 * Decodes a grayscale JPEG at the smallest eighth-scale whose size is at least `size`. With
 * expectW/expectH (a DICOM's Columns and Rows), a stream of another size is an error. Unless
 * `acceptDamaged`, libjpeg-turbo's warnings are errors: a truncated stream ("premature end of
 * JPEG file") or corrupt entropy data would otherwise decode with the missing rows grey.
 */
void decodeJpeg(TjHandle& tj, const uint8_t* data, size_t bytes, int size, std::vector<uint8_t>& pixels, int* outW, int* outH,
                bool acceptDamaged, int expectW = 0, int expectH = 0) {
  if (!tj.handle) throw Error("libjpeg-turbo could not create a decompressor");
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.handle, data, static_cast<unsigned long>(bytes), &width, &height, &subsampling, &colorspace) != 0) {
    throw Error(std::string("not a readable JPEG stream: ") + tjGetErrorStr2(tj.handle));
  }
  if (expectW > 0 && (width != expectW || height != expectH)) {
    throw Error("the JPEG frame is " + std::to_string(width) + "x" + std::to_string(height) + ", not " + std::to_string(expectW) + "x" +
                std::to_string(expectH));
  }
  int count = 0;
  const tjscalingfactor* factors = tjGetScalingFactors(&count);
  int bestW = width, bestH = height;
  for (int k = 0; k < count; ++k) {
    const int w = TJSCALED(width, factors[k]);
    const int h = TJSCALED(height, factors[k]);
    if (w >= size && h >= size && w * h < bestW * bestH) {
      bestW = w;
      bestH = h;
    }
  }
  pixels.resize(static_cast<size_t>(bestW) * bestH);
  const int flags = acceptDamaged ? 0 : TJFLAG_STOPONWARNING;
  if (tjDecompress2(tj.handle, data, static_cast<unsigned long>(bytes), pixels.data(), bestW, 0, bestH, TJPF_GRAY, flags) != 0) {
    if (tjGetErrorCode(tj.handle) == TJERR_FATAL) throw Error(std::string("JPEG decoding failed: ") + tjGetErrorStr2(tj.handle));
    // A warning: the image decoded, but from damaged data (missing rows are left grey).
    if (!acceptDamaged) {
      throw Error(std::string("damaged JPEG data: ") + tjGetErrorStr2(tj.handle) +
                  " (a truncated or corrupt image; the acceptDamagedJpeg option decodes it anyway)");
    }
  }
  *outW = bestW;
  *outH = bestH;
}
#endif

/**
 * A process-wide cap on concurrent image decodes (the runtime's thread count). A loader keeps two
 * batches in flight so that parsing overlaps decoding; with a thread team per batch (OpenMP) the
 * two teams oversubscribed the cores and spun against each other (measured: 302 against 374
 * images/s single-threaded). Here each batch runs up to numThreads() plain threads that take
 * images one at a time, and a decode only starts once it holds a slot, so batches decoded at once
 * share the cores and waiting threads sleep.
 */
class DecodeSlots {
 public:
  void acquire() {
    std::unique_lock<std::mutex> lock(mutex_);
    free_.wait(lock, [&] { return used_ < std::max(1, numThreads()); });
    ++used_;
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --used_;
    }
    free_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable free_;
  int used_ = 0;
};

DecodeSlots& decodeSlots() {
  static DecodeSlots slots;
  return slots;
}

/**
 * Runs `work(worker, i)` for i in [0, count) on up to `threads` threads (the caller is worker 0).
 * No exception leaves a helper thread (that would be std::terminate): the first one thrown stops
 * the remaining work and is rethrown here, on the calling thread, after every helper has joined.
 * A helper that cannot be started (no resources) leaves its share to the others.
 */
template <typename Work>
void forEachImage(int64_t count, int64_t threads, const Work& work) {
  std::atomic<int64_t> next{0};
  std::mutex errorMutex;
  std::exception_ptr error;
  auto loop = [&](int64_t worker) noexcept {
    try {
      for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) {
        decodeSlots().acquire();
        struct Release {
          ~Release() { decodeSlots().release(); }
        } release;
        work(worker, i);
      }
    } catch (...) {
      next.store(count);  // the others stop after their current image
      std::lock_guard<std::mutex> lock(errorMutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> helpers;
  try {
    helpers.reserve(static_cast<size_t>(threads - 1));
    for (int64_t w = 1; w < threads; ++w) helpers.emplace_back(loop, w);
  } catch (...) {
    // Fewer threads than asked: the ones started and this one share the work.
  }
  loop(0);
  for (std::thread& t : helpers) t.join();
  if (error) std::rethrow_exception(error);
}

/** Per-thread scratch of a batch decode. */
struct Scratch {
#ifdef PN_WITH_TURBOJPEG
  TjHandle decoder;
#endif
  std::vector<uint8_t> file;
  std::vector<uint8_t> decoded;
  std::vector<float> resized;
  DicomJpegFrame frame;
};

void checkOptions(const BatchOptions& options) {
  if (options.size < 1 || options.size > 16384) throw Error("size must be between 1 and 16384, got " + std::to_string(options.size));
  if (options.normalize && !(options.std > 0)) throw Error("std must be > 0");
  if (options.normalize && options.threshold) throw Error("threshold applies to uint8 (mask) batches, not normalised ones");
  if (options.channelMean.size() != options.channelStd.size()) {
    throw Error("mean and std need one value per channel, got " + std::to_string(options.channelMean.size()) + " and " +
                std::to_string(options.channelStd.size()));
  }
  if (!options.channelMean.empty()) {
    if (!options.normalize) throw Error("per-channel statistics apply to normalised batches only");
    if (options.channelMean.size() != 1 && options.channelMean.size() != 3) {
      throw Error("channels must be 1 or 3, got " + std::to_string(options.channelMean.size()));
    }
    for (size_t c = 0; c < options.channelStd.size(); ++c) {
      if (!(options.channelStd[c] > 0) || !std::isfinite(options.channelMean[c])) throw Error("std must be > 0 and mean finite (channel " + std::to_string(c) + ")");
    }
  }
}

/** Decodes (if JPEG), resizes and stores one image into its batch slot. */
void storeImage(Scratch& scratch, const uint8_t* data, size_t bytes, bool isJpeg, int w, int h, int expectW, int expectH,
                const BatchOptions& options, void* slot) {
  const int size = options.size;
  const size_t plane = static_cast<size_t>(size) * size;
  const uint8_t* image = data;
  if (isJpeg) {
#ifdef PN_WITH_TURBOJPEG
    decodeJpeg(scratch.decoder, data, bytes, size, scratch.decoded, &w, &h, options.acceptDamagedJpeg, expectW, expectH);
    image = scratch.decoded.data();
#else
    throw Error("this build has no libjpeg-turbo (install libturbojpeg0-dev and rebuild)");
#endif
  } else if (w <= 0 || h <= 0 || bytes != static_cast<size_t>(w) * h) {
    throw Error("raw pixels hold " + std::to_string(bytes) + " bytes, not " + std::to_string(w) + " x " + std::to_string(h));
  }
  if (w == size && h == size) {
    storeExact(image, plane, options, slot);
  } else {
    scratch.resized.resize(plane);
    resizeBilinear(image, w, h, scratch.resized.data(), size);
    store(scratch.resized.data(), plane, options, slot);
  }
}

/** The bytes of row `row` of a [B, 1, size, size] batch of the options' dtype. */
/** The bytes of one batch row: channels x size x size of the options' dtype. */
size_t slotBytesOf(const BatchOptions& options) {
  return static_cast<size_t>(options.channels()) * options.size * options.size * (options.normalize ? sizeof(float) : 1);
}

uint8_t* slotOf(const at::Tensor& out, int64_t row, const BatchOptions& options) {
  const size_t slotBytes = slotBytesOf(options);
  return static_cast<uint8_t*>(out.data_ptr()) + static_cast<size_t>(row) * slotBytes;
}

at::Tensor emptyBatch(int64_t batch, const BatchOptions& options) {
  return at::empty({batch, options.channels(), options.size, options.size}, at::TensorOptions().dtype(options.normalize ? at::kFloat : at::kByte));
}

/** Decodes sources[k] into row rows[k] of `out`; throws naming the first failing source index. */
void decodeRows(const std::vector<ImageSource>& sources, const std::vector<int64_t>& rows, const at::Tensor& out, const BatchOptions& options) {
  const auto count = static_cast<int64_t>(sources.size());
  std::mutex errorMutex;
  std::string firstError;
  int64_t firstErrorIndex = -1;
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(numThreads(), count));
  std::vector<Scratch> scratch(static_cast<size_t>(threads));
  forEachImage(count, threads, [&](int64_t worker, int64_t i) {
    try {
      const ImageSource& src = sources[static_cast<size_t>(i)];
      storeImage(scratch[static_cast<size_t>(worker)], src.data, src.size, src.isJpeg, src.width, src.height, 0, 0, options,
                 slotOf(out, rows[static_cast<size_t>(i)], options));
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(errorMutex);
      if (firstErrorIndex < 0 || i < firstErrorIndex) {
        firstErrorIndex = i;
        firstError = e.what();
      }
    }
  });
  if (firstErrorIndex >= 0) throw Error("image " + std::to_string(firstErrorIndex) + " of the batch: " + firstError);
}

/** PNG files (prepared data) are left to sharp without reading them here first. */
bool hasPngExtension(const std::string& path) {
  if (path.size() < 4) return false;
  std::string ext = path.substr(path.size() - 4);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".png";
}

/** Reads a whole file into `bytes`; false when it cannot be read. */
bool readWholeFile(const std::string& path, std::vector<uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  bool ok = std::fseek(f, 0, SEEK_END) == 0;
  const long length = ok ? std::ftell(f) : -1;
  ok = ok && length >= 0 && std::fseek(f, 0, SEEK_SET) == 0;
  if (ok) {
    bytes.resize(static_cast<size_t>(length));
    ok = std::fread(bytes.data(), 1, bytes.size(), f) == bytes.size();
  }
  std::fclose(f);
  return ok;
}

}  // namespace

Tensor decodeImageBatch(const std::vector<ImageSource>& sources, const BatchOptions& options) {
  return guard([&] {
    checkOptions(options);
    at::Tensor out = emptyBatch(static_cast<int64_t>(sources.size()), options);
    std::vector<int64_t> rows(sources.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int64_t>(i);
    decodeRows(sources, rows, out, options);
    return wrap(out);
  });
}

namespace {

/** `into` as a batch to decode into: a contiguous CPU [B, 1, size, size] tensor of the options' dtype. */
const at::Tensor& checkedInto(const Tensor& into, const BatchOptions& options) {
  const at::Tensor& out = unwrap(into);
  const at::ScalarType dtype = options.normalize ? at::kFloat : at::kByte;
  if (out.dim() != 4 || out.size(1) != options.channels() || out.size(2) != options.size || out.size(3) != options.size || out.scalar_type() != dtype ||
      !out.is_contiguous() || !out.device().is_cpu()) {
    throw Error("Expected a contiguous CPU [B, " + std::to_string(options.channels()) + ", " + std::to_string(options.size) + ", " + std::to_string(options.size) + "] " +
                c10::toString(dtype) + " batch to decode into but received " + c10::str(out.sizes()) + " " + c10::toString(out.scalar_type()) +
                (out.is_contiguous() ? "" : " (not contiguous)") + " on " + out.device().str());
  }
  return out;
}

}  // namespace

void decodeImageBatchInto(const std::vector<ImageSource>& sources, const std::vector<int64_t>& rows, const Tensor& into,
                          const BatchOptions& options) {
  guard([&] {
    checkOptions(options);
    const at::Tensor& out = checkedInto(into, options);
    if (rows.size() != sources.size()) throw Error("Expected one row per source");
    for (int64_t row : rows) {
      if (row < 0 || row >= out.size(0)) throw Error("row " + std::to_string(row) + " is outside the batch of " + std::to_string(out.size(0)));
    }
    decodeRows(sources, rows, out, options);
    return 0;
  });
}

FileBatch readImageFiles(const std::vector<std::string>& paths, const BatchOptions& options, const Tensor* into) {
  return guard([&] {
    checkOptions(options);
    const auto count = static_cast<int64_t>(paths.size());
    at::Tensor out = into ? checkedInto(*into, options) : emptyBatch(count, options);
    if (out.size(0) != count) {
      throw Error("Expected a batch of " + std::to_string(count) + " rows to read " + std::to_string(count) + " files into but received " +
                  std::to_string(out.size(0)));
    }
    const size_t slotBytes = slotBytesOf(options);
    std::vector<char> fallback(paths.size(), 0);
    const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(numThreads(), count));
    std::vector<Scratch> scratch(static_cast<size_t>(threads));
    forEachImage(count, threads, [&](int64_t worker, int64_t i) {
      Scratch& s = scratch[static_cast<size_t>(worker)];
      uint8_t* slot = slotOf(out, i, options);
      try {
        const std::string& path = paths[static_cast<size_t>(i)];
        if ((hasPngExtension(path) && !hasLibPng()) || !readWholeFile(path, s.file)) throw Error("not read here");
        const uint8_t* bytes = s.file.data();
        const size_t size = s.file.size();
        int w = 0, h = 0;
        if (isPng(bytes, size)) {
          // A gray PNG (what prepare writes) is decoded here; any other PNG, or a damaged one,
          // goes to the full reader, which decodes it or names the file and the reason.
          if (!decodeGrayPng(bytes, size, s.decoded, &w, &h, nullptr)) throw Error("not the fast path");
          storeImage(s, s.decoded.data(), s.decoded.size(), false, w, h, 0, 0, options, slot);
        } else if (size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
          storeImage(s, bytes, size, true, 0, 0, 0, 0, options, slot);
        } else if (findSiimJpegFrame(bytes, size, &s.frame)) {
          storeImage(s, s.frame.data, s.frame.size, true, 0, 0, s.frame.columns, s.frame.rows, options, slot);
        } else {
          throw Error("not the fast path");
        }
      } catch (const std::exception&) {
        // Left to the caller's full reader, which names the file and the reason.
        fallback[static_cast<size_t>(i)] = 1;
        std::memset(slot, 0, slotBytes);
      }
    });
    FileBatch result;
    for (int64_t i = 0; i < count; ++i) {
      if (fallback[static_cast<size_t>(i)]) result.fallback.push_back(i);
    }
    if (!into) result.images = wrap(out);
    return result;
  });
}

// ---- the prepared image store (store_api.h) --------------------------------------------------

namespace {

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

class ImageStoreFile {
 public:
  std::string path;
  StoreLayout layout;
  std::vector<uint32_t> checksums;
  std::vector<uint8_t> written;
  std::mutex mutex;  // guards fd against close() during a read
  int fd = -1;
  int readers = 0;
  std::condition_variable idle;

  ~ImageStoreFile() {
    if (fd >= 0) ::close(fd);
  }
};

std::shared_ptr<ImageStoreFile> openImageStore(const std::string& path, const StoreLayout& layout, std::vector<uint32_t> checksums,
                                               std::vector<uint8_t> written) {
  const int64_t plane = layout.size * layout.size;
  if (layout.size < 1 || layout.count < 0 || layout.images < 16 || (layout.masks >= 0 && layout.masks < layout.images + layout.count * plane)) {
    throw Error(path + ": the image store layout is not valid (size " + std::to_string(layout.size) + ", " + std::to_string(layout.count) + " images)");
  }
  if (static_cast<int64_t>(checksums.size()) != layout.count || static_cast<int64_t>(written.size()) != layout.count) {
    throw Error(path + ": expected " + std::to_string(layout.count) + " checksums and written flags");
  }
  auto store = std::make_shared<ImageStoreFile>();
  store->path = path;
  store->layout = layout;
  store->checksums = std::move(checksums);
  store->written = std::move(written);
  store->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (store->fd < 0) throw Error(path + ": cannot open the image store (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(store->fd, &st) != 0) throw Error(path + ": cannot stat the image store (" + std::strerror(errno) + ")");
  const int64_t end = (layout.masks >= 0 ? layout.masks : layout.images) + layout.count * plane;
  if (st.st_size < end) {
    throw Error(path + ": the image store is truncated (" + std::to_string(st.st_size) + " bytes, its header needs " + std::to_string(end) +
                "); re-create it (rerun `pneumo-native store`)");
  }
  return store;
}

void closeImageStore(ImageStoreFile& store) {
  std::unique_lock<std::mutex> lock(store.mutex);
  store.idle.wait(lock, [&] { return store.readers == 0; });
  if (store.fd >= 0) ::close(store.fd);
  store.fd = -1;
}

namespace {

/** Reads exactly `length` bytes at `position`; a short file is an error naming the byte. */
void preadExactly(const ImageStoreFile& store, int fd, uint8_t* dst, size_t length, int64_t position) {
  size_t done = 0;
  while (done < length) {
    const ssize_t n = ::pread(fd, dst + done, length - done, static_cast<off_t>(position + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(store.path + ": cannot read the image store at byte " + std::to_string(position + static_cast<int64_t>(done)) + " (" + std::strerror(errno) + ")");
    if (n == 0) {
      throw Error(store.path + ": the image store ends early (truncated at byte " + std::to_string(position + static_cast<int64_t>(done)) + ", expected " +
                  std::to_string(position + static_cast<int64_t>(length)) + "); re-create it (rerun `pneumo-native store`)");
    }
    done += static_cast<size_t>(n);
  }
}

/** Holds the store's descriptor open for the duration of a read. */
struct ReadLease {
  ImageStoreFile& store;
  int fd;
  explicit ReadLease(ImageStoreFile& s) : store(s) {
    std::lock_guard<std::mutex> lock(store.mutex);
    if (store.fd < 0) throw Error(store.path + ": the image store is closed");
    fd = store.fd;
    ++store.readers;
  }
  ~ReadLease() {
    {
      std::lock_guard<std::mutex> lock(store.mutex);
      --store.readers;
    }
    store.idle.notify_all();
  }
  ReadLease(const ReadLease&) = delete;
  ReadLease& operator=(const ReadLease&) = delete;
};

at::Tensor hostBatch(int64_t rows, int size, at::ScalarType dtype, bool pinned) {
  return at::empty({rows, 1, size, size}, at::TensorOptions().dtype(dtype).pinned_memory(pinned));
}

#ifdef PN_WITH_CUDA
/**
 * Copies the host batches to `device` with non_blocking copies on a side stream, then waits (on
 * this worker thread, never the compute thread) for an event recorded after them. The device
 * tensors are allocated on the side stream and recorded on the device's default and current
 * streams, where the training step uses them.
 */
std::vector<at::Tensor> stageToDevice(const std::vector<at::Tensor>& host, const at::Device& device) {
  c10::cuda::CUDAGuard deviceGuard(device);
  const c10::cuda::CUDAStream consumer = c10::cuda::getCurrentCUDAStream(device.index());
  const c10::cuda::CUDAStream fallback = c10::cuda::getDefaultCUDAStream(device.index());
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device.index());
  std::vector<at::Tensor> out;
  {
    c10::cuda::CUDAStreamGuard streamGuard(side);
    for (const at::Tensor& h : host) {
      at::Tensor d = at::empty(h.sizes(), h.options().device(device).pinned_memory(false));
      d.copy_(h, /*non_blocking=*/h.is_pinned());
      out.push_back(std::move(d));
    }
    cudaEvent_t event = nullptr;
    if (cudaEventCreateWithFlags(&event, cudaEventDisableTiming) != cudaSuccess) throw Error("cudaEventCreate failed staging a batch");
    cudaError_t status = cudaEventRecord(event, side.stream());
    if (status == cudaSuccess) status = cudaEventSynchronize(event);
    cudaEventDestroy(event);
    if (status != cudaSuccess) throw Error(std::string("copying a batch to ") + device.str() + " failed: " + cudaGetErrorString(status));
  }
  for (at::Tensor& d : out) {
    d.record_stream(consumer);
    if (fallback != consumer) d.record_stream(fallback);
  }
  return out;
}
#endif

}  // namespace

StoreBatch readStoreBatch(ImageStoreFile& store, const std::vector<int64_t>& indices, const StoreReadOptions& options) {
  return guard([&] {
    const StoreLayout& layout = store.layout;
    const int stored = static_cast<int>(layout.size);
    const int size = options.size > 0 ? options.size : stored;
    if (size > 16384) throw Error("size must be between 1 and 16384, got " + std::to_string(size));
    if (options.normalize && !(options.std > 0)) throw Error("std must be > 0");
    if (options.masks && layout.masks < 0) throw Error(store.path + ": the image store holds no masks (a test split's store?)");
    for (const int64_t i : indices) {
      if (i < 0 || i >= layout.count) {
        throw Error(store.path + ": image index " + std::to_string(i) + " is out of range (the store holds " + std::to_string(layout.count) + " images)");
      }
      if (store.written[static_cast<size_t>(i)] != 1) {
        throw Error(store.path + ": image " + std::to_string(i) + " was never written (an interrupted conversion? rerun `pneumo-native store` to resume)");
      }
    }
    const at::Device device = parseDevice(options.device);
    const bool pinned = device.is_cuda() && options.pinned;
    const auto rows = static_cast<int64_t>(indices.size());
    at::Tensor images = hostBatch(rows, size, options.normalize ? at::kFloat : at::kByte, pinned);
    at::Tensor masks = options.masks ? hostBatch(rows, size, at::kByte, pinned) : at::Tensor();
    const size_t plane = static_cast<size_t>(stored) * stored;
    const size_t outPlane = static_cast<size_t>(size) * size;
    // The image bytes can go straight into their row when nothing is resized or converted.
    const bool directImage = size == stored && !options.normalize;
    const bool directMask = size == stored;
    BatchOptions imageOptions;
    imageOptions.size = size;
    imageOptions.normalize = options.normalize;
    imageOptions.mean = options.mean;
    imageOptions.std = options.std;
    BatchOptions maskOptions;
    maskOptions.size = size;
    maskOptions.threshold = true;
    ReadLease lease(store);
    const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(numThreads(), rows));
    std::vector<Scratch> scratch(static_cast<size_t>(threads));
    std::vector<std::vector<uint8_t>> maskScratch(static_cast<size_t>(threads));
    std::mutex errorMutex;
    std::string firstError;
    int64_t firstErrorRow = -1;
    forEachImage(rows, threads, [&](int64_t worker, int64_t k) {
      try {
        const int64_t i = indices[static_cast<size_t>(k)];
        Scratch& s = scratch[static_cast<size_t>(worker)];
        uint8_t* imageSlot = static_cast<uint8_t*>(images.data_ptr()) + static_cast<size_t>(k) * outPlane * (options.normalize ? sizeof(float) : 1);
        uint8_t* image = imageSlot;
        if (!directImage) {
          s.file.resize(plane);
          image = s.file.data();
        }
        preadExactly(store, lease.fd, image, plane, layout.images + i * static_cast<int64_t>(plane));
        uint8_t* mask = nullptr;
        uint8_t* maskSlot = nullptr;
        if (options.masks || options.verify) {
          if (layout.masks >= 0) {
            maskSlot = options.masks ? static_cast<uint8_t*>(masks.data_ptr()) + static_cast<size_t>(k) * outPlane : nullptr;
            mask = maskSlot;
            if (!(options.masks && directMask)) {
              auto& m = maskScratch[static_cast<size_t>(worker)];
              m.resize(plane);
              mask = m.data();
            }
            preadExactly(store, lease.fd, mask, plane, layout.masks + i * static_cast<int64_t>(plane));
          }
        }
        if (options.verify) {
          uint32_t c = crc32(image, plane);
          if (mask) c = crc32(mask, plane, c);
          const uint32_t expected = store.checksums[static_cast<size_t>(i)];
          if (c != expected) {
            throw Error(store.path + ": image " + std::to_string(i) + " is damaged: checksum " + hex32(c) + " where the file records " + hex32(expected) +
                        "; re-create the store (rerun `pneumo-native store`)");
          }
        }
        if (!directImage) storeImage(s, image, plane, false, stored, stored, 0, 0, imageOptions, imageSlot);
        if (options.masks && !directMask) storeImage(s, mask, plane, false, stored, stored, 0, 0, maskOptions, maskSlot);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(errorMutex);
        if (firstErrorRow < 0 || k < firstErrorRow) {
          firstErrorRow = k;
          firstError = e.what();
        }
      }
    });
    if (firstErrorRow >= 0) throw Error(firstError);
    StoreBatch out;
    if (device.is_cuda()) {
#ifdef PN_WITH_CUDA
      std::vector<at::Tensor> host{images};
      if (masks.defined()) host.push_back(masks);
      std::vector<at::Tensor> staged = stageToDevice(host, device);
      images = staged[0];
      if (masks.defined()) masks = staged[1];
#else
      throw Error("this build of pneumo-native has no CUDA support: cannot read a batch to " + device.str());
#endif
    } else if (!device.is_cpu()) {
      images = images.to(device);
      if (masks.defined()) masks = masks.to(device);
    }
    out.images = wrap(images);
    if (masks.defined()) out.masks = wrap(masks);
    return out;
  });
}

std::vector<Tensor> stageTensors(const std::vector<Tensor>& host, const std::string& device) {
  return guard([&] {
    const at::Device target = parseDevice(device);
    std::vector<at::Tensor> inputs;
    for (size_t k = 0; k < host.size(); ++k) {
      const at::Tensor& t = unwrap(host[k]);
      if (!t.device().is_cpu()) throw Error("stageTensors: tensor " + std::to_string(k) + " is on " + t.device().str() + ", not the CPU");
      inputs.push_back(t);
    }
    std::vector<at::Tensor> staged;
    if (target.is_cpu()) {
      staged = inputs;
    } else if (target.is_cuda()) {
#ifdef PN_WITH_CUDA
      // Page-locked copies first (a plain memcpy on this worker), so that the device copies are
      // asynchronous and run on the side stream beside the step.
      std::vector<at::Tensor> pinned;
      for (const at::Tensor& t : inputs) pinned.push_back(t.is_pinned() ? t : t.contiguous().pin_memory());
      staged = stageToDevice(pinned, target);
#else
      throw Error("this build of pneumo-native has no CUDA support: cannot stage a batch to " + target.str());
#endif
    } else {
      for (const at::Tensor& t : inputs) staged.push_back(t.to(target));
    }
    std::vector<Tensor> out;
    for (at::Tensor& t : staged) out.push_back(wrap(std::move(t)));
    return out;
  });
}

}  // namespace pn::data
