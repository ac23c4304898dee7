// Batch image decoding for the data path (see data_api.h).
#include <ATen/Parallel.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <string>

#include "../core/torch_internal.h"
#include "data_api.h"

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

/** Writes `count` float pixel values to the output slot as uint8 or normalised float32. */
void store(const float* values, size_t count, const BatchOptions& options, void* slot) {
  if (options.normalize) {
    const float scale = 1.0f / (255.0f * options.std);
    const float shift = -options.mean / options.std;
    float* out = static_cast<float*>(slot);
    for (size_t i = 0; i < count; ++i) out[i] = values[i] * scale + shift;
  } else {
    uint8_t* out = static_cast<uint8_t*>(slot);
    for (size_t i = 0; i < count; ++i) out[i] = static_cast<uint8_t>(std::clamp(values[i] + 0.5f, 0.0f, 255.0f));
  }
}

void storeExact(const uint8_t* pixels, size_t count, const BatchOptions& options, void* slot) {
  if (options.normalize) {
    const float scale = 1.0f / (255.0f * options.std);
    const float shift = -options.mean / options.std;
    float* out = static_cast<float*>(slot);
    for (size_t i = 0; i < count; ++i) out[i] = pixels[i] * scale + shift;
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

/** Decodes a grayscale JPEG at the smallest eighth-scale whose size is at least `size`. */
void decodeJpeg(TjHandle& tj, const ImageSource& src, int size, std::vector<uint8_t>& pixels, int* outW, int* outH) {
  if (!tj.handle) throw Error("libjpeg-turbo could not create a decompressor");
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.handle, src.data, static_cast<unsigned long>(src.size), &width, &height, &subsampling, &colorspace) != 0) {
    throw Error(std::string("not a readable JPEG stream: ") + tjGetErrorStr2(tj.handle));
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
  if (tjDecompress2(tj.handle, src.data, static_cast<unsigned long>(src.size), pixels.data(), bestW, 0, bestH, TJPF_GRAY, 0) != 0) {
    // Warnings (e.g. extraneous bytes) still produce an image; errors do not.
    if (tjGetErrorCode(tj.handle) == TJERR_FATAL) throw Error(std::string("JPEG decoding failed: ") + tjGetErrorStr2(tj.handle));
  }
  *outW = bestW;
  *outH = bestH;
}
#endif

}  // namespace

Tensor decodeImageBatch(const std::vector<ImageSource>& sources, const BatchOptions& options) {
  return guard([&] {
    const int size = options.size;
    if (size < 1 || size > 16384) throw Error("size must be between 1 and 16384, got " + std::to_string(size));
    if (options.normalize && !(options.std > 0)) throw Error("std must be > 0");
    const auto batch = static_cast<int64_t>(sources.size());
    at::Tensor out = at::empty({batch, 1, size, size}, at::TensorOptions().dtype(options.normalize ? at::kFloat : at::kByte));
    const size_t plane = static_cast<size_t>(size) * size;
    const size_t slotBytes = plane * (options.normalize ? sizeof(float) : 1);
    auto* base = static_cast<uint8_t*>(out.data_ptr());

    std::mutex errorMutex;
    std::string firstError;
    int64_t firstErrorIndex = -1;
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
#ifdef PN_WITH_TURBOJPEG
      TjHandle tj;
#endif
      std::vector<uint8_t> pixels;
      std::vector<float> resized(plane);
      for (int64_t i = begin; i < end; ++i) {
        try {
          const ImageSource& src = sources[static_cast<size_t>(i)];
          const uint8_t* image = src.data;
          int w = src.width, h = src.height;
          if (src.isJpeg) {
#ifdef PN_WITH_TURBOJPEG
            decodeJpeg(tj, src, size, pixels, &w, &h);
            image = pixels.data();
#else
            throw Error("this build has no libjpeg-turbo (install libturbojpeg0-dev and rebuild)");
#endif
          } else if (w <= 0 || h <= 0 || src.size != static_cast<size_t>(w) * h) {
            throw Error("raw pixels hold " + std::to_string(src.size) + " bytes, not " + std::to_string(w) + " x " + std::to_string(h));
          }
          void* slot = base + static_cast<size_t>(i) * slotBytes;
          if (w == size && h == size) {
            storeExact(image, plane, options, slot);
          } else {
            resizeBilinear(image, w, h, resized.data(), size);
            store(resized.data(), plane, options, slot);
          }
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(errorMutex);
          if (firstErrorIndex < 0 || i < firstErrorIndex) {
            firstErrorIndex = i;
            firstError = e.what();
          }
        }
      }
    });
    if (firstErrorIndex >= 0) throw Error("image " + std::to_string(firstErrorIndex) + " of the batch: " + firstError);
    return wrap(out);
  });
}

}  // namespace pn::data
