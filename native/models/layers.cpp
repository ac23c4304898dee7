// The leaf blocks of the zoo (Conv2d, BatchNorm2d, Linear, Sequential) as TorchScript modules
// built in C++, with the parameter names and initialisation of their PyTorch counterparts.
#include <iomanip>
#include <regex>
#include <sstream>

#include "model_internal.h"

namespace pn::zoo {

namespace {

std::string ints(int64_t v) { return "[" + std::to_string(v) + ", " + std::to_string(v) + "]"; }

bool isIdentifier(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

}  // namespace

namespace {
thread_local std::shared_ptr<torch::jit::CompilationUnit> tCurrentUnit;
}

CompilationScope::CompilationScope() : previous_(std::move(tCurrentUnit)) {
  tCurrentUnit = std::make_shared<torch::jit::CompilationUnit>();
}

CompilationScope::~CompilationScope() { tCurrentUnit = std::move(previous_); }

Module newModule(const std::string& type) {
  // All classes of one model share a compilation unit: with one unit per class, LibTorch 1.13's
  // alias analysis copies nested module types without end (memory blows up at nesting depth 5).
  auto cu = tCurrentUnit ? tCurrentUnit : std::make_shared<torch::jit::CompilationUnit>();
  Module m(c10::QualifiedName("__torch__.pn." + type), cu, /*shouldMangle=*/true);
  m.register_attribute("training", c10::BoolType::get(), true);
  return m;
}

void define(Module& m, const std::string& source) {
  // Modules built in C++ have no __call__ sugar: `self.conv1(x)` is written for readability and
  // compiled as `self.conv1.forward(x)` (tensor methods such as add_ are left alone).
  static const std::regex kCall(R"((self(?:\.[A-Za-z_]\w*)+|getattr\([^()]*\))\()");
  std::string out;
  auto begin = std::sregex_iterator(source.begin(), source.end(), kCall);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const std::smatch& match = *it;
    const std::string target = match[1].str();
    out += source.substr(last, static_cast<size_t>(match.position(0)) - last);
    const bool tensorMethod = target.size() > 1 && target.back() == '_';
    out += tensorMethod ? target + "(" : target + ".forward(";
    last = static_cast<size_t>(match.position(0) + match.length(0));
  }
  out += source.substr(last);
  m.define(out);
}

std::string literal(double value) {
  std::ostringstream out;
  out << std::setprecision(12) << value;
  std::string s = out.str();
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string attr(const std::string& name) { return isIdentifier(name) ? "self." + name : "getattr(self, \"" + name + "\")"; }

Module conv2d(int64_t in, int64_t out, int64_t kernel, const ConvOptions& o) {
  Module m = newModule("Conv2d");
  at::Tensor weight = torch::empty({out, in / o.groups, kernel, kernel});
  torch::nn::init::kaiming_normal_(weight, 0, torch::kFanOut, torch::kReLU);
  m.register_parameter("weight", weight.set_requires_grad(true), false);
  if (o.bias) m.register_parameter("bias", torch::zeros({out}).set_requires_grad(true), false);
  const std::string bias = o.bias ? "self.bias" : "None";
  const int64_t span = (kernel - 1) * o.dilation;  // total "same" padding at stride 1
  std::ostringstream src;
  src << "def forward(self, x):\n";
  if (o.samePadding && (o.stride > 1 || span % 2 != 0)) {
    // TensorFlow "same": pad so that out = ceil(in / stride), the extra pixel going right/bottom.
    src << "    ih = x.size(2)\n    iw = x.size(3)\n"
        << "    ph = max(((ih + " << o.stride - 1 << ") // " << o.stride << " - 1) * " << o.stride << " + " << span + 1 << " - ih, 0)\n"
        << "    pw = max(((iw + " << o.stride - 1 << ") // " << o.stride << " - 1) * " << o.stride << " + " << span + 1 << " - iw, 0)\n"
        << "    x = torch.constant_pad_nd(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], 0.0)\n"
        << "    return torch.conv2d(x, self.weight, " << bias << ", " << ints(o.stride) << ", [0, 0], " << ints(o.dilation) << ", "
        << o.groups << ")\n";
  } else {
    const int64_t padding = o.samePadding ? span / 2 : o.padding;
    src << "    return torch.conv2d(x, self.weight, " << bias << ", " << ints(o.stride) << ", " << ints(padding) << ", "
        << ints(o.dilation) << ", " << o.groups << ")\n";
  }
  define(m, src.str());
  return m;
}

Module batchNorm(int64_t channels, double eps, double momentum) {
  Module m = newModule("BatchNorm2d");
  m.register_parameter("weight", torch::ones({channels}).set_requires_grad(true), false);
  m.register_parameter("bias", torch::zeros({channels}).set_requires_grad(true), false);
  m.register_buffer("running_mean", torch::zeros({channels}));
  m.register_buffer("running_var", torch::ones({channels}));
  m.register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
  define(m, "def forward(self, x):\n"
            "    if self.training:\n"
            "        self.num_batches_tracked.add_(1)\n"
            "    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, self.training, " +
                literal(momentum) + ", " + literal(eps) + ", True)\n");
  return m;
}

Module linear(int64_t in, int64_t out) {
  Module m = newModule("Linear");
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  m.register_parameter("weight", torch::empty({out, in}).uniform_(-bound, bound).set_requires_grad(true), false);
  m.register_parameter("bias", torch::empty({out}).uniform_(-bound, bound).set_requires_grad(true), false);
  define(m, "def forward(self, x):\n    return torch.linear(x, self.weight, self.bias)\n");
  return m;
}

Module sequential(const std::string& type, const std::vector<std::pair<std::string, Module>>& children) {
  Module m = newModule(type);
  std::string src = "def forward(self, x):\n";
  for (const auto& [name, child] : children) {
    m.register_module(name, child);
    src += "    x = " + attr(name) + "(x)\n";
  }
  src += "    return x\n";
  define(m, src);
  return m;
}

}  // namespace pn::zoo
