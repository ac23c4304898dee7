// Grayscale PNG decoding with libpng for the native batch path (see png_decode.h). Torch-free:
// compiled outside the precompiled header and the unity batches.
#include "png_decode.h"

#include <cstdio>
#include <cstring>
#include <new>

#ifdef PN_WITH_LIBPNG
#include <png.h>

#include <csetjmp>
#endif

namespace pn::data {

bool hasLibPng() {
#ifdef PN_WITH_LIBPNG
  return true;
#else
  return false;
#endif
}

bool isPng(const uint8_t* data, size_t size) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  return size >= 8 && std::memcmp(data, kSignature, 8) == 0;
}

#ifdef PN_WITH_LIBPNG
namespace {

/** The in-memory stream and what libpng reported; plain data (the setjmp frame holds nothing else). */
struct PngStream {
  const uint8_t* data;
  size_t size;
  size_t pos;
  bool warned;
  char message[200];
};

extern "C" void pnReadBytes(png_structp png, png_bytep out, png_size_t n) {
  auto* s = static_cast<PngStream*>(png_get_io_ptr(png));
  if (s->size - s->pos < n) png_error(png, "the file ends early (truncated)");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}

extern "C" void pnPngError(png_structp png, png_const_charp message) {
  auto* s = static_cast<PngStream*>(png_get_error_ptr(png));
  std::snprintf(s->message, sizeof s->message, "%s", message);
  png_longjmp(png, 1);
}

extern "C" void pnPngWarning(png_structp png, png_const_charp message) {
  // Recorded, not fatal here: the image is handed to the full reader afterwards.
  auto* s = static_cast<PngStream*>(png_get_error_ptr(png));
  if (!s->warned) std::snprintf(s->message, sizeof s->message, "%s", message);
  s->warned = true;
}

enum class PngResult { Ok, Unsupported, Failed };

/**
 * The libpng calls, in a frame with nothing to destroy (libpng reports errors by longjmp).
 * `pixels` is sized once the header is known.
 */
PngResult readGray(PngStream* stream, std::vector<uint8_t>* pixels, int* outW, int* outH) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, stream, pnPngError, pnPngWarning);
  if (png == nullptr) return PngResult::Failed;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return PngResult::Failed;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return PngResult::Failed;
  }
  png_set_read_fn(png, stream, pnReadBytes);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  const int depth = png_get_bit_depth(png, info), colour = png_get_color_type(png, info);
  if (colour != PNG_COLOR_TYPE_GRAY || depth > 8 || png_get_valid(png, info, PNG_INFO_tRNS) != 0 || width == 0 || height == 0 ||
      width > 65535 || height > 65535) {
    std::snprintf(stream->message, sizeof stream->message, "colour type %d, bit depth %d: not 8-bit-or-less gray", colour, depth);
    png_destroy_read_struct(&png, &info, nullptr);
    return PngResult::Unsupported;
  }
  if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  bool allocated = true;
  try {
    pixels->resize(static_cast<size_t>(width) * height);
  } catch (const std::bad_alloc&) {
    allocated = false;
  }
  if (!allocated) {
    std::snprintf(stream->message, sizeof stream->message, "out of memory");
    png_destroy_read_struct(&png, &info, nullptr);
    return PngResult::Failed;
  }
  uint8_t* base = pixels->data();
  for (int pass = 0; pass < passes; ++pass) {
    for (png_uint_32 y = 0; y < height; ++y) png_read_row(png, base + static_cast<size_t>(y) * width, nullptr);
  }
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  *outW = static_cast<int>(width);
  *outH = static_cast<int>(height);
  return PngResult::Ok;
}

}  // namespace
#endif

bool decodeGrayPng(const uint8_t* data, size_t size, std::vector<uint8_t>& pixels, int* width, int* height, std::string* why) {
#ifdef PN_WITH_LIBPNG
  if (!isPng(data, size)) {
    if (why) *why = "not a PNG stream";
    return false;
  }
  PngStream stream{data, size, 0, false, {0}};
  const PngResult result = readGray(&stream, &pixels, width, height);
  if (result == PngResult::Ok && !stream.warned) return true;
  if (why) *why = std::string(result == PngResult::Unsupported ? "unsupported PNG: " : "damaged PNG: ") + stream.message;
  return false;
#else
  if (why) *why = "this build has no libpng";
  return false;
#endif
}

}  // namespace pn::data
