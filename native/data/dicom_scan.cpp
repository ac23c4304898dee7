// The SIIM-like DICOM fast path (see dicom_scan.h). Plain C++17: no torch headers.
#include "dicom_scan.h"

#include <cstring>
#include <string>

namespace pn::data {

namespace {

constexpr uint32_t kItem = 0xFFFEE000u;
constexpr uint32_t kItemEnd = 0xFFFEE00Du;
constexpr uint32_t kSequenceEnd = 0xFFFEE0DDu;
constexpr uint32_t kPixelData = 0x7FE00010u;
constexpr uint32_t kUndefined = 0xFFFFFFFFu;
constexpr int kMaxDepth = 32;
const char* const kJpegBaseline = "1.2.840.10008.1.2.4.50";

/** A bounds-checked little-endian reader; every failed check makes the scan give up. */
class Reader {
 public:
  Reader(const uint8_t* bytes, size_t size) : bytes_(bytes), size_(size) {}

  bool has(size_t pos, size_t count) const { return pos <= size_ && count <= size_ - pos; }
  uint16_t u16(size_t pos) const { return static_cast<uint16_t>(bytes_[pos] | (bytes_[pos + 1] << 8)); }
  uint32_t u32(size_t pos) const { return static_cast<uint32_t>(u16(pos)) | (static_cast<uint32_t>(u16(pos + 2)) << 16); }
  uint32_t tag(size_t pos) const { return (static_cast<uint32_t>(u16(pos)) << 16) | u16(pos + 2); }
  const uint8_t* at(size_t pos) const { return bytes_ + pos; }
  size_t size() const { return size_; }

 private:
  const uint8_t* bytes_;
  size_t size_;
};

/** An element header: tag, VR (explicit VR; empty for items and delimiters), header size, length. */
struct Header {
  uint32_t tag = 0;
  char vr[3] = {0, 0, 0};
  size_t size = 0;
  uint32_t length = 0;
};

bool isLongVr(const char* vr) {
  static const char* const kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
  for (const char* v : kLong) {
    if (vr[0] == v[0] && vr[1] == v[1]) return true;
  }
  return false;
}

bool readHeader(const Reader& r, size_t pos, Header* h) {
  if (!r.has(pos, 8)) return false;
  h->tag = r.tag(pos);
  if ((h->tag >> 16) == 0xFFFE) {
    h->vr[0] = 0;
    h->size = 8;
    h->length = r.u32(pos + 4);
    return true;
  }
  h->vr[0] = static_cast<char>(*r.at(pos + 4));
  h->vr[1] = static_cast<char>(*r.at(pos + 5));
  if (h->vr[0] < 'A' || h->vr[0] > 'Z' || h->vr[1] < 'A' || h->vr[1] > 'Z') return false;
  if (isLongVr(h->vr)) {
    if (!r.has(pos, 12)) return false;
    h->size = 12;
    h->length = r.u32(pos + 8);
  } else {
    h->size = 8;
    h->length = r.u16(pos + 6);
  }
  return true;
}

/** A string value with DICOM padding (spaces, NULs) trimmed at both ends. */
std::string text(const Reader& r, size_t pos, uint32_t length) {
  const char* p = reinterpret_cast<const char*>(r.at(pos));
  size_t begin = 0, end = length;
  while (begin < end && (p[begin] == ' ' || p[begin] == '\0')) ++begin;
  while (end > begin && (p[end - 1] == ' ' || p[end - 1] == '\0')) --end;
  return std::string(p + begin, end - begin);
}

bool skipElements(const Reader& r, size_t* pos, uint32_t endTag, int depth);

/** Skips a sequence of undefined length starting at `*pos` (just after its header). */
bool skipSequence(const Reader& r, size_t* pos, int depth) {
  if (depth > kMaxDepth) return false;
  for (;;) {
    Header h;
    if (!readHeader(r, *pos, &h)) return false;
    *pos += h.size;
    if (h.tag == kSequenceEnd) return true;
    if (h.tag != kItem) return false;
    if (h.length == kUndefined) {
      if (!skipElements(r, pos, kItemEnd, depth + 1)) return false;
    } else {
      if (!r.has(*pos, h.length)) return false;
      *pos += h.length;
    }
  }
}

/** Skips the elements of an undefined-length item up to and including its delimiter. */
bool skipElements(const Reader& r, size_t* pos, uint32_t endTag, int depth) {
  if (depth > kMaxDepth) return false;
  for (;;) {
    Header h;
    if (!readHeader(r, *pos, &h)) return false;
    *pos += h.size;
    if (h.tag == endTag) return true;
    if (h.length == kUndefined) {
      if (std::strcmp(h.vr, "SQ") != 0 || !skipSequence(r, pos, depth + 1)) return false;
    } else {
      if (!r.has(*pos, h.length)) return false;
      *pos += h.length;
    }
  }
}

/** The first SOF marker of a JPEG stream must be 8-bit Baseline, Extended or Progressive DCT. */
bool isEightBitDctJpeg(const uint8_t* p, size_t n) {
  if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return false;
  size_t pos = 2;
  while (pos + 4 <= n) {
    if (p[pos] != 0xFF) return false;
    const uint8_t marker = p[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    const size_t length = (static_cast<size_t>(p[pos + 2]) << 8) | p[pos + 3];
    if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
      return (marker == 0xC0 || marker == 0xC1 || marker == 0xC2) && pos + 4 < n && p[pos + 4] == 8;
    }
    if (marker == 0xDA || marker == 0xD9 || length < 2) return false;  // scan or end before any SOF
    pos += 2 + length;
  }
  return false;
}

}  // namespace

bool findSiimJpegFrame(const uint8_t* bytes, size_t size, DicomJpegFrame* frame) {
  const Reader r(bytes, size);
  if (!r.has(0, 132) || std::memcmp(bytes + 128, "DICM", 4) != 0) return false;
  // File meta group (0002,xxxx): always explicit VR little endian.
  size_t pos = 132;
  std::string syntax;
  for (;;) {
    if (!r.has(pos, 8) || r.u16(pos) != 0x0002) break;
    Header h;
    if (!readHeader(r, pos, &h) || h.length == kUndefined || !r.has(pos + h.size, h.length)) return false;
    if (h.tag == 0x00020010u) syntax = text(r, pos + h.size, h.length);
    pos += h.size + h.length;
  }
  if (syntax != kJpegBaseline) return false;

  int samples = 1, rows = 0, columns = 0, frames = 1;
  std::string photometric = "MONOCHROME2";
  for (;;) {
    Header h;
    if (!readHeader(r, pos, &h) || h.vr[0] == 0) return false;  // no Pixel Data, or a stray item
    const size_t value = pos + h.size;
    if (h.tag == kPixelData) {
      if (h.length != kUndefined) return false;  // native pixels: not the JPEG case
      pos = value;
      break;
    }
    if (h.length == kUndefined) {
      pos = value;
      if (std::strcmp(h.vr, "SQ") != 0 || !skipSequence(r, &pos, 1)) return false;
      continue;
    }
    if (!r.has(value, h.length)) return false;
    auto us = [&](int* out) {
      if (h.length != 2) return false;
      *out = r.u16(value);
      return true;
    };
    switch (h.tag) {
      case 0x00280002u:
        if (!us(&samples)) return false;
        break;
      case 0x00280004u:
        photometric = text(r, value, h.length);
        break;
      case 0x00280008u: {
        const std::string n = text(r, value, h.length);
        if (n.empty() || n.size() > 9 || n.find_first_not_of("0123456789") != std::string::npos) return false;
        frames = std::stoi(n);
        break;
      }
      case 0x00280010u:
        if (!us(&rows)) return false;
        break;
      case 0x00280011u:
        if (!us(&columns)) return false;
        break;
      default:
        break;
    }
    pos = value + h.length;
  }
  if (samples != 1 || photometric != "MONOCHROME2" || frames > 1 || rows <= 0 || columns <= 0) return false;

  // Encapsulated Pixel Data: the Basic Offset Table item, then one item per fragment.
  Header h;
  if (!readHeader(r, pos, &h) || h.tag != kItem || h.length == kUndefined || !r.has(pos + h.size, h.length)) return false;
  pos += h.size + h.length;
  const uint8_t* first = nullptr;
  size_t firstSize = 0;
  size_t fragments = 0;
  frame->joined.clear();
  for (;;) {
    if (!readHeader(r, pos, &h)) return false;
    pos += h.size;
    if (h.tag == kSequenceEnd) break;
    if (h.tag != kItem || h.length == kUndefined || !r.has(pos, h.length)) return false;
    if (fragments == 0) {
      first = r.at(pos);
      firstSize = h.length;
    } else {
      if (fragments == 1) frame->joined.assign(first, first + firstSize);
      frame->joined.insert(frame->joined.end(), r.at(pos), r.at(pos) + h.length);
    }
    ++fragments;
    pos += h.length;
  }
  if (fragments == 0) return false;
  frame->data = fragments == 1 ? first : frame->joined.data();
  frame->size = fragments == 1 ? firstSize : frame->joined.size();
  frame->rows = rows;
  frame->columns = columns;
  return isEightBitDctJpeg(frame->data, frame->size);
}

}  // namespace pn::data
