// Native encoders, named after one Python source per family so that its state dicts load as is:
//   resnet18/34/50               torchvision.models.resnet (0.14)
//   se_resnext50/101_32x4d       Cadene pretrainedmodels.models.senet (0.7.4)
//   efficientnet-b3/b4/b5        lukemelas efficientnet_pytorch (0.7.1)
// The encoder contract: forward(x) returns the list of 5 feature maps at strides 2, 4, 8, 16, 32
// (the classifier of the source model is left out). `outputStride` < 32 dilates the last stages
// (smp's make_dilated: stride 1, dilation d, padding d * (k // 2) on every conv of the stage).
#include <cmath>

#include "model_internal.h"

namespace pn::zoo {

namespace {

// ---- ResNet (torchvision) and SE-ResNeXt (pretrainedmodels) -------------------------------------

struct ResNetConfig {
  std::vector<int64_t> blocks;
  bool bottleneck = false;
  int64_t groups = 1;
  int64_t baseWidth = 64;
  bool squeezeExcite = false;  // Cadene SEResNeXtBottleneck: se_module after bn3, layer0.* stem
};

/** SEModule: channel squeeze-excite with 1x1 convs fc1/fc2 (reduction 16). */
Module seModule(int64_t channels, int64_t reduction) {
  Module m = newModule("SEModule");
  m.register_module("fc1", conv2d(channels, channels / reduction, 1, {.bias = true}));
  m.register_module("fc2", conv2d(channels / reduction, channels, 1, {.bias = true}));
  define(m, "def forward(self, x):\n"
            "    s = torch.adaptive_avg_pool2d(x, [1, 1])\n"
            "    s = torch.sigmoid(self.fc2(torch.relu_(self.fc1(s))))\n"
            "    return x * s\n");
  return m;
}

Module residualBlock(const ResNetConfig& c, int64_t in, int64_t planes, int64_t stride, int64_t dilation) {
  const int64_t expansion = c.bottleneck ? 4 : 1;
  const int64_t out = planes * expansion;
  Module m = newModule(c.bottleneck ? "Bottleneck" : "BasicBlock");
  std::string src = "def forward(self, x):\n";
  if (c.bottleneck) {
    const int64_t width = static_cast<int64_t>(std::floor(static_cast<double>(planes) * (static_cast<double>(c.baseWidth) / 64.0))) * c.groups;
    m.register_module("conv1", conv2d(in, width, 1));
    m.register_module("bn1", batchNorm(width));
    m.register_module("conv2", conv2d(width, width, 3, {.stride = stride, .padding = dilation, .dilation = dilation, .groups = c.groups}));
    m.register_module("bn2", batchNorm(width));
    m.register_module("conv3", conv2d(width, out, 1));
    m.register_module("bn3", batchNorm(out));
    src += "    y = torch.relu_(self.bn1(self.conv1(x)))\n"
           "    y = torch.relu_(self.bn2(self.conv2(y)))\n"
           "    y = self.bn3(self.conv3(y))\n";
    if (c.squeezeExcite) {
      m.register_module("se_module", seModule(out, 16));
      src += "    y = self.se_module(y)\n";
    }
  } else {
    m.register_module("conv1", conv2d(in, planes, 3, {.stride = stride, .padding = dilation, .dilation = dilation}));
    m.register_module("bn1", batchNorm(planes));
    m.register_module("conv2", conv2d(planes, planes, 3, {.padding = dilation, .dilation = dilation}));
    m.register_module("bn2", batchNorm(planes));
    src += "    y = torch.relu_(self.bn1(self.conv1(x)))\n"
           "    y = self.bn2(self.conv2(y))\n";
  }
  if (stride != 1 || in != out) {
    // Under dilation the downsample keeps its 1x1 kernel and loses its stride (as smp does).
    m.register_module("downsample", sequential("Downsample", {{"0", conv2d(in, out, 1, {.stride = stride})}, {"1", batchNorm(out)}}));
    src += "    return torch.relu_(y + self.downsample(x))\n";
  } else {
    src += "    return torch.relu_(y + x)\n";
  }
  define(m, src);
  return m;
}

Encoder resnetFamily(const ResNetConfig& c, int64_t inChannels, int64_t outputStride) {
  const int64_t expansion = c.bottleneck ? 4 : 1;
  Module enc = newModule(c.squeezeExcite ? "SENetEncoder" : "ResNetEncoder");
  std::string src = "def forward(self, x):\n";
  if (c.squeezeExcite) {
    Module layer0 = newModule("Layer0");
    layer0.register_module("conv1", conv2d(inChannels, 64, 7, {.stride = 2, .padding = 3}));
    layer0.register_module("bn1", batchNorm(64));
    define(layer0, "def forward(self, x):\n    return torch.relu_(self.bn1(self.conv1(x)))\n");
    enc.register_module("layer0", layer0);
    // pretrainedmodels' layer0.pool: MaxPool2d(3, stride=2, ceil_mode=True), no padding.
    src += "    f2 = self.layer0(x)\n"
           "    x = torch.max_pool2d(f2, [3, 3], [2, 2], [0, 0], [1, 1], True)\n";
  } else {
    enc.register_module("conv1", conv2d(inChannels, 64, 7, {.stride = 2, .padding = 3}));
    enc.register_module("bn1", batchNorm(64));
    src += "    f2 = torch.relu_(self.bn1(self.conv1(x)))\n"
           "    x = torch.max_pool2d(f2, [3, 3], [2, 2], [1, 1], [1, 1], False)\n";
  }
  EncoderInfo info;
  info.channels = {64};
  info.strides = {2};
  int64_t in = 64;
  int64_t stride = 4;
  const int64_t planes[4] = {64, 128, 256, 512};
  const char* names[4] = {"f4", "f8", "f16", "f32"};
  for (int layer = 0; layer < 4; ++layer) {
    int64_t blockStride = layer == 0 ? 1 : 2;
    int64_t dilation = 1;
    if (blockStride == 2 && stride * 2 > outputStride) {
      dilation = stride * 2 / outputStride;
      blockStride = 1;
    }
    stride *= blockStride;
    std::vector<std::pair<std::string, Module>> blocks;
    for (int64_t b = 0; b < c.blocks[layer]; ++b) {
      blocks.emplace_back(std::to_string(b), residualBlock(c, in, planes[layer], b == 0 ? blockStride : 1, dilation));
      in = planes[layer] * expansion;
    }
    const std::string layerName = "layer" + std::to_string(layer + 1);
    enc.register_module(layerName, sequential("ResLayer", blocks));
    src += std::string("    ") + names[layer] + " = self." + layerName + "(" + (layer == 0 ? "x" : names[layer - 1]) + ")\n";
    info.channels.push_back(in);
    info.strides.push_back(stride);
  }
  src += "    return [f2, f4, f8, f16, f32]\n";
  define(enc, src);
  return {enc, info};
}

// ---- EfficientNet (efficientnet_pytorch) ------------------------------------------------------------

struct BlockArgs {
  int64_t kernel, stride, expand, in, out, repeats;
};
// efficientnet-b0's blocks (efficientnet_pytorch utils.py, all with se_ratio 0.25 and id_skip).
const BlockArgs kEfficientNetB0[] = {{3, 1, 1, 32, 16, 1}, {3, 2, 6, 16, 24, 2}, {5, 2, 6, 24, 40, 2}, {3, 2, 6, 40, 80, 3},
                                     {5, 1, 6, 80, 112, 3}, {5, 2, 6, 112, 192, 4}, {3, 1, 6, 192, 320, 1}};
constexpr double kBnMomentum = 0.01;  // 1 - 0.99 (TensorFlow's decay)
constexpr double kBnEps = 1e-3;
constexpr double kDropConnect = 0.2;

int64_t roundFilters(int64_t filters, double width) {
  const double f = static_cast<double>(filters) * width;
  int64_t out = std::max<int64_t>(8, static_cast<int64_t>(f + 4.0) / 8 * 8);
  if (static_cast<double>(out) < 0.9 * f) out += 8;
  return out;
}

Module mbConvBlock(int64_t in, int64_t out, int64_t expand, int64_t kernel, int64_t stride, double dropConnect) {
  Module m = newModule("MBConvBlock");
  const int64_t mid = in * expand;
  const int64_t squeezed = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(in) * 0.25));
  std::string src = "def forward(self, inputs):\n    x = inputs\n";
  if (expand != 1) {
    m.register_module("_expand_conv", conv2d(in, mid, 1, {.samePadding = true}));
    m.register_module("_bn0", batchNorm(mid, kBnEps, kBnMomentum));
    src += "    x = torch.silu(self._bn0(self._expand_conv(x)))\n";
  }
  m.register_module("_depthwise_conv", conv2d(mid, mid, kernel, {.stride = stride, .groups = mid, .samePadding = true}));
  m.register_module("_bn1", batchNorm(mid, kBnEps, kBnMomentum));
  m.register_module("_se_reduce", conv2d(mid, squeezed, 1, {.bias = true}));
  m.register_module("_se_expand", conv2d(squeezed, mid, 1, {.bias = true}));
  m.register_module("_project_conv", conv2d(mid, out, 1, {.samePadding = true}));
  m.register_module("_bn2", batchNorm(out, kBnEps, kBnMomentum));
  src += "    x = torch.silu(self._bn1(self._depthwise_conv(x)))\n"
         "    s = torch.adaptive_avg_pool2d(x, [1, 1])\n"
         "    s = self._se_expand(torch.silu(self._se_reduce(s)))\n"
         "    x = torch.sigmoid(s) * x\n"
         "    x = self._bn2(self._project_conv(x))\n";
  if (stride == 1 && in == out) {
    if (dropConnect > 0) {
      const std::string keep = literal(1.0 - dropConnect);
      src += "    if self.training:\n"
             "        r = torch.rand([x.size(0), 1, 1, 1], dtype=x.dtype, device=x.device) + " + keep + "\n"
             "        x = x / " + keep + " * torch.floor(r)\n";
    }
    src += "    x = x + inputs\n";
  }
  src += "    return x\n";
  define(m, src);
  return m;
}

Encoder efficientNet(double width, double depth, int64_t inChannels) {
  struct Planned {
    int64_t in, out, expand, kernel, stride;
  };
  std::vector<Planned> plan;
  for (const BlockArgs& a : kEfficientNetB0) {
    const int64_t in = roundFilters(a.in, width);
    const int64_t out = roundFilters(a.out, width);
    const auto repeats = static_cast<int64_t>(std::ceil(depth * static_cast<double>(a.repeats)));
    for (int64_t r = 0; r < repeats; ++r) plan.push_back({r == 0 ? in : out, out, a.expand, a.kernel, r == 0 ? a.stride : 1});
  }
  Module enc = newModule("EfficientNetEncoder");
  const int64_t stem = roundFilters(32, width);
  enc.register_module("_conv_stem", conv2d(inChannels, stem, 3, {.stride = 2, .samePadding = true}));
  enc.register_module("_bn0", batchNorm(stem, kBnEps, kBnMomentum));
  Module blocks = newModule("ModuleList");
  EncoderInfo info{{stem}, {2}, 32};
  std::string src = "def forward(self, x):\n    x = torch.silu(self._bn0(self._conv_stem(x)))\n    features = [x]\n";
  int64_t stride = 2;
  const auto n = static_cast<int64_t>(plan.size());
  for (int64_t i = 0; i < n; ++i) {
    const Planned& p = plan[static_cast<size_t>(i)];
    const double rate = kDropConnect * static_cast<double>(i) / static_cast<double>(n);
    blocks.register_module(std::to_string(i), mbConvBlock(p.in, p.out, p.expand, p.kernel, p.stride, rate));
    src += "    x = getattr(self._blocks, \"" + std::to_string(i) + "\")(x)\n";
    stride *= p.stride;
    // A stage ends before the next stride-2 block, and at the last block.
    const bool stageEnd = i == n - 1 || plan[static_cast<size_t>(i + 1)].stride == 2;
    if (stageEnd && stride > 2) {
      src += "    features.append(x)\n";
      info.channels.push_back(p.out);
      info.strides.push_back(stride);
    }
  }
  enc.register_module("_blocks", blocks);
  src += "    return features\n";
  define(enc, src);
  return {enc, info};
}

}  // namespace

bool isNativeEncoder(const std::string& name) {
  static const char* kNames[] = {"resnet18", "resnet34", "resnet50", "se_resnext50_32x4d", "se_resnext101_32x4d",
                                 "efficientnet-b3", "efficientnet-b4", "efficientnet-b5"};
  for (const char* n : kNames) {
    if (name == n) return true;
  }
  return false;
}

Encoder buildEncoder(const std::string& name, int64_t inChannels, int64_t outputStride) {
  if (outputStride != 32 && outputStride != 16 && outputStride != 8) {
    throw Error("output stride must be 8, 16 or 32, got " + std::to_string(outputStride));
  }
  if (name == "resnet18") return resnetFamily({.blocks = {2, 2, 2, 2}}, inChannels, outputStride);
  if (name == "resnet34") return resnetFamily({.blocks = {3, 4, 6, 3}}, inChannels, outputStride);
  if (name == "resnet50") return resnetFamily({.blocks = {3, 4, 6, 3}, .bottleneck = true}, inChannels, outputStride);
  if (name == "se_resnext50_32x4d") return resnetFamily({.blocks = {3, 4, 6, 3}, .bottleneck = true, .groups = 32, .baseWidth = 4, .squeezeExcite = true}, inChannels, outputStride);
  if (name == "se_resnext101_32x4d") return resnetFamily({.blocks = {3, 4, 23, 3}, .bottleneck = true, .groups = 32, .baseWidth = 4, .squeezeExcite = true}, inChannels, outputStride);
  if (name.rfind("efficientnet-", 0) == 0) {
    if (outputStride != 32) throw Error("encoder " + name + " has no dilated variant (output stride 32 only)");
    if (name == "efficientnet-b3") return efficientNet(1.2, 1.4, inChannels);
    if (name == "efficientnet-b4") return efficientNet(1.4, 1.8, inChannels);
    if (name == "efficientnet-b5") return efficientNet(1.6, 2.2, inChannels);
  }
  throw Error("unknown encoder '" + name +
              "' (native encoders: resnet18, resnet34, resnet50, se_resnext50_32x4d, se_resnext101_32x4d, efficientnet-b3, "
              "efficientnet-b4, efficientnet-b5; or a TorchScript file)");
}

Encoder loadTorchScriptEncoder(const std::string& path, int64_t inChannels, bool dilatedLastStage) {
  Module m;
  try {
    m = torch::jit::load(path);
  } catch (const c10::Error& e) {
    throw Error("could not read the TorchScript encoder " + path + ": " + e.what_without_backtrace());
  }
  // Probe the contract on a small input in eval mode (BatchNorm statistics stay untouched).
  const bool wasTraining = m.is_training();
  m.eval();
  constexpr int64_t kProbe = 64;
  c10::IValue out;
  {
    torch::NoGradGuard noGrad;
    torch::jit::GraphOptimizerEnabledGuard plain(false);
    try {
      out = m.forward({torch::zeros({1, inChannels, kProbe, kProbe})});
    } catch (const c10::Error& e) {
      throw Error("the TorchScript encoder " + path + " failed on a 1x" + std::to_string(inChannels) + "x64x64 input: " +
                  e.what_without_backtrace());
    }
  }
  m.train(wasTraining);
  std::vector<at::Tensor> features;
  if (out.isTensorList()) {
    for (const at::Tensor& t : out.toTensorVector()) features.push_back(t);
  } else if (out.isTuple()) {
    for (const c10::IValue& v : out.toTupleRef().elements()) {
      if (!v.isTensor()) break;
      features.push_back(v.toTensor());
    }
  }
  if (features.size() != 5) {
    throw Error("the TorchScript encoder " + path + " must return a list of 5 feature maps (strides 2, 4, 8, 16, 32) but returned " +
                (features.empty() ? std::string("no tensor list") : std::to_string(features.size()) + " tensors"));
  }
  EncoderInfo info;
  for (size_t k = 0; k < features.size(); ++k) {
    const at::Tensor& f = features[k];
    int64_t expected = int64_t{2} << k;
    // DeepLabV3 also takes an encoder exported dilated (output stride 16: the last stage at 16).
    if (k == 4 && dilatedLastStage && f.dim() == 4 && f.size(2) * 16 == kProbe && f.size(3) * 16 == kProbe) expected = 16;
    if (f.dim() != 4 || f.size(2) * expected != kProbe || f.size(3) * expected != kProbe) {
      throw Error("the TorchScript encoder " + path + " returned feature " + std::to_string(k) + " of shape " +
                  c10::str(f.sizes()) + " for a 64x64 input; expected stride " + std::to_string(expected) +
                  (k == 4 && dilatedLastStage ? " (or 16, dilated)" : ""));
    }
    info.channels.push_back(f.size(1));
    info.strides.push_back(expected);
  }
  return {m, info};
}

}  // namespace pn::zoo
