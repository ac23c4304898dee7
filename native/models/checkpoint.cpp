// Weights in and out: state dicts (Python torch.save files, safetensors), checkpoints and
// TorchScript exports.
//
// A checkpoint and an export are both a TorchScript archive of the model (torch.jit.load runs
// either), with extra files:
//   pneumo/format         "pneumo-native-model 1"
//   pneumo/kind           "checkpoint" or "export"
//   pneumo/spec.json      the architecture spec as the TypeScript side wrote it
//   pneumo/native.txt     what the native side needs to run it (key=value lines)
//   pneumo/metadata.json  training metadata (checkpoints)
//   pneumo/optimizer.pt   optimizer state: a dict of tensors in torch.save format (checkpoints)
//
// Integrity. Files are written through CheckedFile: every write() is checked (short writes
// retried, errors kept with their errno) and LibTorch's zip writer is fed through a callback that
// never reports failure to it: a failing zip writer throws from its destructor, which is noexcept,
// so a full disk used to reach std::terminate (SIGABRT). The error is raised after the writer has
// finished, naming the file and the errno ("... (ENOSPC)"). Atomicity (temporary file, fsync,
// rename) is the TypeScript caller's (src/core/atomic-write.ts): these functions write the exact
// path they are given. On load, the CRC-32 of every stored zip entry is checked before LibTorch
// reads the archive (LibTorch's miniz is built without its reader's CRC checks).
#include <torch/csrc/jit/serialization/export.h>
#include <torch/serialize.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_internal.h"

namespace pn {

namespace {

constexpr const char* kFormat = "pneumo-native-model 1";

Model::Impl& checkedImpl(const Model& model) {
  if (!model.defined()) throw Error("model is undefined (disposed or never created)");
  return *model.impl();
}

std::vector<char> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string joinInts(const std::vector<int64_t>& values) {
  std::string s;
  for (size_t k = 0; k < values.size(); ++k) s += (k ? "," : "") + std::to_string(values[k]);
  return s;
}

std::vector<int64_t> splitInts(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(std::stoll(item));
  }
  return out;
}

std::string nativeDescription(const Model::Impl& impl) {
  const ModelSpec& s = impl.spec;
  std::ostringstream out;
  out << "architecture=" << s.architecture << "\nencoder=" << s.encoder << "\nclasses=" << s.classes << "\ninChannels=" << s.inChannels
      << "\nclassificationHead=" << s.classificationHead << "\nchannelsLast=" << s.channelsLast << "\nprecision=" << s.precision
      << "\nencoderFrozen=" << impl.encoderFrozen << "\nrequiredDivisor=" << impl.encoder.requiredDivisor
      << "\nchannels=" << joinInts(impl.encoder.channels) << "\nstrides=" << joinInts(impl.encoder.strides)
      << "\ndecoderChannels=" << joinInts(s.decoderChannels) << "\n";
  return out.str();
}

void parseNativeDescription(const std::string& text, Model::Impl& impl) {
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq);
    const std::string value = line.substr(eq + 1);
    ModelSpec& s = impl.spec;
    if (key == "architecture") s.architecture = value;
    else if (key == "encoder") s.encoder = value;
    else if (key == "classes") s.classes = std::stoll(value);
    else if (key == "inChannels") s.inChannels = std::stoll(value);
    else if (key == "classificationHead") s.classificationHead = value == "1";
    else if (key == "channelsLast") s.channelsLast = value == "1";
    else if (key == "precision") s.precision = value;
    else if (key == "autocast" && value == "1") s.precision = "fp16";  // before precision: autocast meant CUDA fp16
    else if (key == "encoderFrozen") impl.encoderFrozen = value == "1";
    else if (key == "requiredDivisor") impl.encoder.requiredDivisor = std::stoll(value);
    else if (key == "channels") impl.encoder.channels = splitInts(value);
    else if (key == "strides") impl.encoder.strides = splitInts(value);
    else if (key == "decoderChannels") s.decoderChannels = splitInts(value);
  }
}

/** The errno's symbolic name (ENOSPC, EROFS, ...) for messages the TypeScript side maps. */
std::string errnoName(int err) {
  switch (err) {
    case ENOSPC: return "ENOSPC";
#ifdef EDQUOT
    case EDQUOT: return "EDQUOT";
#endif
    case EROFS: return "EROFS";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EFBIG: return "EFBIG";
    case EIO: return "EIO";
    case EMFILE: return "EMFILE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return "errno " + std::to_string(err);
  }
}

/**
 * A file opened for writing whose every write is checked. After a failure, further writes are
 * dropped (and still reported as done to the caller, see the file comment); `finish()` closes the
 * file and throws the first failure: "cannot write PATH: strerror (ENOSPC)".
 */
class CheckedFile {
 public:
  explicit CheckedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) error_ = errno;
  }
  CheckedFile(const CheckedFile&) = delete;
  CheckedFile& operator=(const CheckedFile&) = delete;
  ~CheckedFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  /** Appends `n` bytes; always returns n (a failure is kept for finish()). */
  size_t write(const void* data, size_t n) noexcept {
    const char* p = static_cast<const char*>(data);
    size_t left = n;
    while (error_ == 0 && left > 0) {
      const ssize_t k = ::write(fd_, p, left);
      if (k < 0) {
        if (errno == EINTR) continue;
        error_ = errno;
      } else if (k == 0) {
        error_ = ENOSPC;  // no progress: the device is full
      } else {
        p += k;
        left -= static_cast<size_t>(k);
        written_ += static_cast<uint64_t>(k);
      }
    }
    return n;
  }

  /** Closes the file; throws pn::Error naming it and the errno if anything failed. */
  void finish() {
    if (fd_ >= 0) {
      if (::close(fd_) != 0 && error_ == 0) error_ = errno;
      fd_ = -1;
    }
    if (error_ != 0) throw Error("cannot write " + path_ + ": " + std::strerror(error_) + " (" + errnoName(error_) + ")");
  }

 private:
  std::string path_;
  int fd_ = -1;
  int error_ = 0;
  uint64_t written_ = 0;
};

// ---- zip integrity -----------------------------------------------------------------------------

/** CRC-32 (zip polynomial), slicing by 8. */
uint32_t crc32(const uint8_t* data, size_t n) {
  static const auto tables = [] {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  while (n >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, data, 4);
    std::memcpy(&hi, data + 4, 4);
    lo ^= c;
    c = tables[7][lo & 0xFF] ^ tables[6][(lo >> 8) & 0xFF] ^ tables[5][(lo >> 16) & 0xFF] ^ tables[4][lo >> 24] ^ tables[3][hi & 0xFF] ^
        tables[2][(hi >> 8) & 0xFF] ^ tables[1][(hi >> 16) & 0xFF] ^ tables[0][hi >> 24];
    data += 8;
    n -= 8;
  }
  while (n-- > 0) c = tables[0][(c ^ *data++) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) { return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24); }
uint64_t le64(const uint8_t* p) { return static_cast<uint64_t>(le32(p)) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

/**
 * Checks the CRC-32 of every stored (uncompressed) entry of the zip archive `data` against its
 * central directory; throws pn::Error naming `what` and the entry. Not a zip archive: nothing to
 * check (the loader reports what it is).
 */
void verifyZipChecksums(const uint8_t* data, size_t size, const std::string& what) {
  if (size < 22 || le32(data) != 0x04034b50u) return;
  auto damaged = [&](const std::string& why) { return Error(what + ": the file is damaged (" + why + "); it cannot be loaded safely"); };
  // End of central directory: the last signature within the final 64 KiB + 22 bytes.
  size_t eocd = std::string::npos;
  const size_t lowest = size > 65557 ? size - 65557 : 0;
  for (size_t pos = size - 22 + 1; pos-- > lowest;) {
    if (le32(data + pos) == 0x06054b50u) {
      eocd = pos;
      break;
    }
  }
  if (eocd == std::string::npos) throw damaged("no zip end-of-directory record: truncated?");
  uint64_t entries = le16(data + eocd + 10);
  uint64_t cdSize = le32(data + eocd + 12);
  uint64_t cdOffset = le32(data + eocd + 16);
  if ((entries == 0xFFFF || cdSize == 0xFFFFFFFFu || cdOffset == 0xFFFFFFFFu) && eocd >= 20 && le32(data + eocd - 20) == 0x07064b50u) {
    const uint64_t z64 = le64(data + eocd - 20 + 8);
    if (z64 > size - 56 || le32(data + z64) != 0x06064b50u) throw damaged("bad zip64 end-of-directory record");
    entries = le64(data + z64 + 32);
    cdSize = le64(data + z64 + 40);
    cdOffset = le64(data + z64 + 48);
  }
  if (cdOffset > size || cdSize > size - cdOffset) throw damaged("the zip directory lies outside the file: truncated?");
  uint64_t pos = cdOffset;
  for (uint64_t k = 0; k < entries; ++k) {
    if (pos + 46 > cdOffset + cdSize || le32(data + pos) != 0x02014b50u) throw damaged("bad zip directory entry " + std::to_string(k));
    const uint8_t* e = data + pos;
    const uint16_t method = le16(e + 10);
    const uint32_t crc = le32(e + 16);
    uint64_t compressed = le32(e + 20);
    uint64_t uncompressed = le32(e + 24);
    const uint16_t nameLen = le16(e + 28), extraLen = le16(e + 30), commentLen = le16(e + 32);
    uint64_t local = le32(e + 42);
    if (pos + 46 + nameLen + extraLen + commentLen > cdOffset + cdSize) throw damaged("bad zip directory entry " + std::to_string(k));
    const std::string name(reinterpret_cast<const char*>(e + 46), nameLen);
    // Zip64 extra field: the 64-bit values of the fields saturated above, in this order.
    for (uint64_t x = 0; x + 4 <= extraLen;) {
      const uint8_t* f = e + 46 + nameLen + x;
      const uint16_t id = le16(f), len = le16(f + 2);
      if (id == 0x0001) {
        uint64_t at = 4;
        if (uncompressed == 0xFFFFFFFFu && at + 8 <= 4u + len) uncompressed = le64(f + at), at += 8;
        if (compressed == 0xFFFFFFFFu && at + 8 <= 4u + len) compressed = le64(f + at), at += 8;
        if (local == 0xFFFFFFFFu && at + 8 <= 4u + len) local = le64(f + at), at += 8;
      }
      x += 4u + len;
    }
    pos += 46u + nameLen + extraLen + commentLen;
    if (local > size - 30 || le32(data + local) != 0x04034b50u) throw damaged("entry " + name + " has no local header");
    const uint64_t start = local + 30u + le16(data + local + 26) + le16(data + local + 28);
    if (start > size || compressed > size - start) throw damaged("entry " + name + " runs past the end of the file: truncated?");
    if (method != 0) continue;  // compressed entries (not written by LibTorch) are left to the reader
    if (compressed != uncompressed) throw damaged("entry " + name + " is stored with two sizes");
    const uint32_t actual = crc32(data + start, static_cast<size_t>(compressed));
    if (actual != crc) throw damaged("zip entry " + name + " fails its CRC-32 check: " + hex32(actual) + " where the archive records " + hex32(crc));
  }
}

/** Maps `path` read-only and checks its zip CRCs (see verifyZipChecksums). */
void verifyZipFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open " + path + ": " + std::strerror(errno) + " (" + errnoName(errno) + ")");
  struct stat info {};
  if (::fstat(fd, &info) != 0 || info.st_size <= 0) {
    ::close(fd);
    return;  // empty or unreadable: the loader names the problem
  }
  const size_t size = static_cast<size_t>(info.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw Error("cannot read " + path + ": " + std::strerror(errno));
  ::madvise(map, size, MADV_SEQUENTIAL);
  try {
    verifyZipChecksums(static_cast<const uint8_t*>(map), size, path);
  } catch (...) {
    ::munmap(map, size);
    throw;
  }
  ::munmap(map, size);
}

std::vector<char> pickleTensors(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : tensors) dict.insert(name, unwrap(t).detach().cpu().contiguous());  // plain layout whatever the model's
  return torch::pickle_save(c10::IValue(dict));
}

std::vector<std::pair<std::string, Tensor>> unpickleTensors(const std::vector<char>& bytes, const std::string& what) {
  c10::IValue value = torch::pickle_load(bytes);
  // Training scripts often nest the weights: {"state_dict": {...}} or {"model": {...}}.
  for (int depth = 0; depth < 2 && value.isGenericDict(); ++depth) {
    bool nested = false;
    for (const auto& entry : value.toGenericDict()) {
      if (entry.key().isString() && (entry.key().toStringRef() == "state_dict" || entry.key().toStringRef() == "model") &&
          entry.value().isGenericDict()) {
        value = entry.value();
        nested = true;
        break;
      }
    }
    if (!nested) break;
  }
  if (!value.isGenericDict()) throw Error(what + " does not hold a dict of tensors (found " + value.tagKind() + ")");
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString() || !entry.value().isTensor()) continue;
    out.emplace_back(entry.key().toStringRef(), wrap(entry.value().toTensor()));
  }
  return out;
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> modelStateDict(const Model& model) {
  Model::Impl& impl = checkedImpl(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  return guard([&] {
    std::vector<std::pair<std::string, Tensor>> out;
    for (const auto& p : impl.module.named_parameters(true)) out.emplace_back(p.name, wrap(p.value.detach()));
    for (const auto& b : impl.module.named_buffers(true)) out.emplace_back(b.name, wrap(b.value.detach()));
    return out;
  });
}

StateDictReport modelLoadStateDict(const Model& model, const std::vector<std::pair<std::string, Tensor>>& tensors,
                                   const std::string& prefix, bool strict) {
  Model::Impl& impl = checkedImpl(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  return guard([&] {
    std::map<std::string, at::Tensor> targets;
    for (const auto& p : impl.module.named_parameters(true)) targets.emplace(p.name, p.value);
    for (const auto& b : impl.module.named_buffers(true)) targets.emplace(b.name, b.value);
    StateDictReport report;
    std::set<std::string> seen;
    torch::NoGradGuard noGrad;
    std::vector<std::pair<at::Tensor, at::Tensor>> copies;
    for (const auto& [name, tensor] : tensors) {
      const std::string full = prefix + name;
      auto it = targets.find(full);
      if (it == targets.end()) {
        report.unexpected.push_back(full);
        continue;
      }
      const at::Tensor& src = unwrap(tensor);
      if (src.sizes() != it->second.sizes()) {
        throw Error("Expected shape " + c10::str(it->second.sizes()) + " for " + full + " but the state dict holds " + c10::str(src.sizes()));
      }
      copies.emplace_back(it->second, src);
      seen.insert(full);
    }
    for (const auto& [name, t] : targets) {
      if (name.rfind(prefix, 0) == 0 && !seen.count(name)) report.missing.push_back(name);
    }
    if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
      auto some = [](const std::vector<std::string>& names) {
        std::string s;
        for (size_t k = 0; k < names.size() && k < 5; ++k) s += (k ? ", " : "") + names[k];
        if (names.size() > 5) s += ", ... (" + std::to_string(names.size()) + " in all)";
        return s;
      };
      throw Error("state dict does not match the model: missing [" + some(report.missing) + "], unexpected [" + some(report.unexpected) + "]");
    }
    // Copy only once everything matched, so a failed load leaves the model untouched.
    for (auto& [dst, src] : copies) dst.copy_(src);
    report.loaded = static_cast<int64_t>(copies.size());
    impl.inference.reset();
    return report;
  });
}

std::vector<std::pair<std::string, Tensor>> readTorchStateDict(const std::string& path) {
  return guard([&] {
    const std::vector<char> bytes = readFile(path);
    verifyZipChecksums(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
    return unpickleTensors(bytes, path);
  });
}

void writeTorchStateDict(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  guard([&] {
    const std::vector<char> bytes = pickleTensors(tensors);
    CheckedFile out(path);
    out.write(bytes.data(), bytes.size());
    out.finish();
    return 0;
  });
}

std::vector<std::pair<std::string, Tensor>> readSafetensors(const std::string& path, uint64_t dataOffset,
                                                            const std::vector<SafetensorsEntry>& entries) {
  return guard([&] {
    static const std::map<std::string, at::ScalarType> kTypes = {
        {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16}, {"F64", at::kDouble}, {"I64", at::kLong},
        {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},       {"U8", at::kByte},    {"BOOL", at::kBool}};
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot open " + path);
    std::vector<std::pair<std::string, Tensor>> out;
    for (const SafetensorsEntry& e : entries) {
      auto type = kTypes.find(e.dtype);
      if (type == kTypes.end()) throw Error("unsupported safetensors dtype '" + e.dtype + "' for " + e.name + " in " + path);
      const auto options = at::TensorOptions().dtype(type->second);
      // A strided view reads the elements it spans, then gathers them into a contiguous tensor.
      const bool strided = !e.strides.empty();
      if (strided && e.strides.size() != e.shape.size()) {
        throw Error("entry " + e.name + " in " + path + " has " + std::to_string(e.strides.size()) + " strides for " +
                    std::to_string(e.shape.size()) + " dimensions");
      }
      int64_t span = 1;
      bool empty = false;
      for (size_t d = 0; d < e.shape.size(); ++d) {
        if (e.shape[d] == 0) empty = true;
        if (strided) {
          if (e.strides[d] < 0) throw Error("entry " + e.name + " in " + path + " has a negative stride");
          span += (e.shape[d] - 1) * e.strides[d];
        }
      }
      at::Tensor t = strided ? torch::empty({empty ? 0 : span}, options) : torch::empty(e.shape, options);
      const uint64_t bytes = static_cast<uint64_t>(t.nbytes());
      if (e.end < e.begin || e.end - e.begin != bytes) {
        throw Error("entry " + e.name + " in " + path + " spans " + std::to_string(e.end - e.begin) + " bytes but its shape " +
                    c10::str(e.shape) + " needs " + std::to_string(bytes));
      }
      in.seekg(static_cast<std::streamoff>(dataOffset + e.begin));
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
      if (!in) throw Error("file " + path + " ends inside " + e.name);
      if (strided) t = empty ? torch::empty(e.shape, options) : t.as_strided(e.shape, e.strides).contiguous();
      out.emplace_back(e.name, wrap(t));
    }
    return out;
  });
}

namespace {

void saveModule(Model::Impl& impl, const torch::jit::Module& module, const std::string& path, const std::string& kind,
                const CheckpointExtras* extras) {
  torch::jit::ExtraFilesMap files{{"pneumo/format", kFormat},
                                  {"pneumo/kind", kind},
                                  {"pneumo/spec.json", impl.spec.json},
                                  {"pneumo/native.txt", nativeDescription(impl)}};
  if (extras) {
    files["pneumo/metadata.json"] = extras->metadataJson;
    const std::vector<char> optimizer = pickleTensors(extras->optimizer);
    files["pneumo/optimizer.pt"] = std::string(optimizer.begin(), optimizer.end());
  }
  CheckedFile out(path);
  // The callback never fails towards LibTorch (see the file comment): out.finish() reports.
  torch::jit::ExportModule(module, [&out](const void* data, size_t n) { return out.write(data, n); }, files);
  out.finish();
}

}  // namespace

void saveCheckpoint(const Model& model, const std::string& path, const CheckpointExtras& extras) {
  Model::Impl& impl = checkedImpl(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  guard([&] {
    saveModule(impl, impl.module, path, "checkpoint", &extras);
    return 0;
  });
}

void exportTorchScript(const Model& model, const std::string& path) {
  Model::Impl& impl = checkedImpl(model);
  std::lock_guard<std::mutex> lock(impl.mutex);
  guard([&] {
    torch::NoGradGuard noGrad;  // the copy's tensors are leaves that need no gradient
    torch::jit::Module copy = impl.module.clone();
    copy.eval();
    saveModule(impl, copy, path, "export", nullptr);
    return 0;
  });
}

LoadedCheckpoint loadCheckpoint(const std::string& path, const std::string& device) {
  return guard([&] {
    auto impl = std::make_shared<Model::Impl>();
    impl->device = parseDevice(device);
    torch::jit::ExtraFilesMap files{{"pneumo/format", ""}, {"pneumo/kind", ""}, {"pneumo/spec.json", ""}, {"pneumo/native.txt", ""},
                                    {"pneumo/metadata.json", ""}, {"pneumo/optimizer.pt", ""}};
    verifyZipFile(path);
    try {
      impl->module = torch::jit::load(path, impl->device, files);
    } catch (const c10::Error& e) {
      throw Error("cannot load the model file " + path + ": " + e.what_without_backtrace());
    }
    if (files["pneumo/format"] != kFormat) {
      throw Error("Expected a pneumo-native checkpoint or export (" + std::string(kFormat) + ") for " + path + " but received " +
                  (files["pneumo/format"].empty() ? std::string("a TorchScript file without pneumo/format") : "format '" + files["pneumo/format"] + "'"));
    }
    impl->spec.json = files["pneumo/spec.json"];
    parseNativeDescription(files["pneumo/native.txt"], *impl);
    for (const at::Tensor& p : impl->module.parameters()) p.requires_grad_(true);
    if (impl->encoderFrozen) {
      for (const at::Tensor& p : impl->module.attr("encoder").toModule().parameters()) p.requires_grad_(false);
    }
    LoadedCheckpoint loaded;
    loaded.kind = files["pneumo/kind"];
    if (!files["pneumo/metadata.json"].empty()) loaded.extras.metadataJson = files["pneumo/metadata.json"];
    const std::string& optimizer = files["pneumo/optimizer.pt"];
    if (!optimizer.empty()) {
      for (auto& [name, t] : unpickleTensors(std::vector<char>(optimizer.begin(), optimizer.end()), path + ":pneumo/optimizer.pt")) {
        loaded.extras.optimizer.emplace_back(name, wrap(unwrap(t).to(impl->device)));
      }
    }
    loaded.model = Model(impl);
    return loaded;
  });
}

}  // namespace pn
