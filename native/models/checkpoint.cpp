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
#include <torch/serialize.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
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

/** Writes through a temporary file in the same folder, renamed into place once complete. */
template <typename Write>
void atomicWrite(const std::string& path, Write&& write) {
  std::random_device rd;
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("cannot rename " + tmp + " to " + path);
  }
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
  return guard([&] { return unpickleTensors(readFile(path), path); });
}

void writeTorchStateDict(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  guard([&] {
    const std::vector<char> bytes = pickleTensors(tensors);
    atomicWrite(path, [&](const std::string& tmp) {
      std::ofstream out(tmp, std::ios::binary);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!out) throw Error("cannot write " + tmp);
    });
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
  atomicWrite(path, [&](const std::string& tmp) { module.save(tmp, files); });
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
