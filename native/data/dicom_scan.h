// Torch-free fast path of the native data path: locating the JPEG frame of a SIIM-like DICOM
// (explicit VR little endian, JPEG Baseline, MONOCHROME2, one frame) without the TypeScript
// parser. Anything else, or anything unusual about the file, is left to the TypeScript reader,
// which owns every error message (src/data/dicom.ts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pn::data {

/** The JPEG stream of a SIIM-like DICOM's single frame, with its declared size. */
struct DicomJpegFrame {
  /** The frame's bytes: the one fragment in place, else the fragments joined into `joined`. */
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::vector<uint8_t> joined;
  int rows = 0;
  int columns = 0;
};

/**
 * Finds the JPEG frame of `bytes` when the file is exactly the SIIM case: "DICM" preamble, a file
 * meta group naming JPEG Baseline (1.2.840.10008.1.2.4.50), an explicit VR little endian data set
 * whose every element fits in the file, Samples per Pixel 1, MONOCHROME2 (or no Photometric
 * Interpretation, which the TypeScript reader also reads as MONOCHROME2), at most one frame,
 * positive Rows and Columns, and encapsulated Pixel Data with at least one fragment. Returns
 * false for anything else, so that the caller falls back to the full reader.
 */
bool findSiimJpegFrame(const uint8_t* bytes, size_t size, DicomJpegFrame* frame);

}  // namespace pn::data
