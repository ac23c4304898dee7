// Torch-free PNG decoding for the native data path (libpng; compiled in with PN_WITH_LIBPNG).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pn::data {

/** True when the addon was built with libpng (native PNG decoding in the batch path). */
bool hasLibPng();

/** True when `data` starts with the PNG signature. */
bool isPng(const uint8_t* data, size_t size);

/**
 * Decodes a grayscale PNG (colour type 0, bit depth 1, 2, 4 or 8, no transparency chunk,
 * interlaced or not) to 8-bit pixels, low bit depths scaled to 0-255 as sharp/libvips do. Returns
 * false, with the reason in `why`, for anything else (colour, palette, 16-bit, alpha, a damaged or
 * truncated stream, any libpng warning): the caller's full reader then owns the file and its
 * error, so a PNG this decoder takes decodes to exactly what sharp gives.
 */
bool decodeGrayPng(const uint8_t* data, size_t size, std::vector<uint8_t>& pixels, int* width, int* height, std::string* why);

}  // namespace pn::data
