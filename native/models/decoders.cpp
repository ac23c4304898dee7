// Decoders and heads around an encoder's 5 feature maps (f2, f4, f8, f16, f32):
//   unet       smp's Unet decoder: nearest x2, concat skip, (Conv3x3-BN-ReLU) x2; widths 256..16
//   scseunet   the same blocks, each followed by SCSE (channel SE with reduction 2 and a spatial
//              1x1-conv squeeze, combined by element-wise max; the first place's SCSEUnet)
//   albunet    TernausNet's AlbuNet: bilinear x2, (Conv3x3+ReLU) x2 without BN, widths
//              256/256/256/64/128/32, a centre block below stride 32 (input divisible by 64)
//   unetpp     smp's UnetPlusPlus nested decoder (blocks x_{depth}_{layer})
//   deeplabv3  ASPP (rates 6/12/18 at output stride 16) + Conv3x3-BN-ReLU, bilinear to input size
// plus the segmentation head and the optional classification head (global average pool ->
// linear -> one logit) on f32.
#include <sstream>

#include "model_internal.h"

namespace pn::zoo {

namespace {

/** Conv-BN-ReLU as smp's Conv2dReLU: "0" conv (no bias), "1" BatchNorm. */
Module convBnRelu(int64_t in, int64_t out, int64_t kernel, int64_t dilation = 1) {
  Module m = newModule("Conv2dReLU");
  m.register_module("0", conv2d(in, out, kernel, {.padding = dilation * (kernel / 2), .dilation = dilation}));
  m.register_module("1", batchNorm(out));
  define(m, "def forward(self, x):\n    return torch.relu_(getattr(self, \"1\")(getattr(self, \"0\")(x)))\n");
  return m;
}

/** Conv3x3 (with bias) + ReLU: TernausNet's ConvRelu. */
Module convRelu(int64_t in, int64_t out) {
  Module m = newModule("ConvRelu");
  m.register_module("conv", conv2d(in, out, 3, {.padding = 1, .bias = true}));
  define(m, "def forward(self, x):\n    return torch.relu_(self.conv(x))\n");
  return m;
}

/** SCSE with max: max(x * cSE(x), x * sSE(x)). */
Module scse(int64_t channels) {
  Module m = newModule("SCSE");
  m.register_module("cse_reduce", conv2d(channels, channels / 2, 1, {.bias = true}));
  m.register_module("cse_expand", conv2d(channels / 2, channels, 1, {.bias = true}));
  m.register_module("sse", conv2d(channels, 1, 1, {.bias = true}));
  define(m, "def forward(self, x):\n"
            "    s = torch.adaptive_avg_pool2d(x, [1, 1])\n"
            "    c = x * torch.sigmoid(self.cse_expand(torch.relu_(self.cse_reduce(s))))\n"
            "    p = x * torch.sigmoid(self.sse(x))\n"
            "    return torch.maximum(c, p)\n");
  return m;
}

/** smp's DecoderBlock: nearest x2, concat skip (if any), conv1, conv2, optional SCSE. */
Module unetBlock(int64_t in, int64_t skip, int64_t out, bool withScse) {
  Module m = newModule("DecoderBlock");
  m.register_module("conv1", convBnRelu(in + skip, out, 3));
  m.register_module("conv2", convBnRelu(out, out, 3));
  std::string src = skip > 0 ? "def forward(self, x, skip):\n" : "def forward(self, x):\n";
  src += "    x = torch.upsample_nearest2d(x, None, [2.0, 2.0])\n";
  if (skip > 0) src += "    x = torch.cat([x, skip], 1)\n";
  src += "    x = self.conv2(self.conv1(x))\n";
  if (withScse) {
    m.register_module("scse", scse(out));
    src += "    x = self.scse(x)\n";
  }
  src += "    return x\n";
  define(m, src);
  return m;
}

const char* kFeatureArgs = "self, f2, f4, f8, f16, f32";

Module unetDecoder(const EncoderInfo& enc, const std::vector<int64_t>& widths, bool withScse) {
  Module m = newModule(withScse ? "SCSEUnetDecoder" : "UnetDecoder");
  Module blocks = newModule("ModuleList");
  const std::vector<int64_t>& c = enc.channels;
  const int64_t in[5] = {c[4], widths[0], widths[1], widths[2], widths[3]};
  const int64_t skip[5] = {c[3], c[2], c[1], c[0], 0};
  const char* skipName[5] = {"f16", "f8", "f4", "f2", ""};
  std::string src = std::string("def forward(") + kFeatureArgs + "):\n    x = f32\n";
  for (int i = 0; i < 5; ++i) {
    blocks.register_module(std::to_string(i), unetBlock(in[i], skip[i], widths[static_cast<size_t>(i)], withScse));
    src += "    x = getattr(self.blocks, \"" + std::to_string(i) + "\")(x" + (skip[i] > 0 ? std::string(", ") + skipName[i] : "") + ")\n";
  }
  m.register_module("blocks", blocks);
  src += "    return x\n";
  define(m, src);
  return m;
}

/** TernausNet's DecoderBlockV2 (is_deconv=False): bilinear x2, ConvRelu(in, mid), ConvRelu(mid, out). */
Module albuBlock(int64_t in, int64_t mid, int64_t out) {
  Module m = newModule("DecoderBlockV2");
  m.register_module("conv1", convRelu(in, mid));
  m.register_module("conv2", convRelu(mid, out));
  define(m, "def forward(self, x):\n"
            "    x = torch.upsample_bilinear2d(x, None, False, [2.0, 2.0])\n"
            "    return self.conv2(self.conv1(x))\n");
  return m;
}

Module albunetDecoder(const EncoderInfo& enc) {
  // TernausNet AlbuNet with num_filters = 32 (widths as the first place used them).
  constexpr int64_t nf = 32;
  const std::vector<int64_t>& c = enc.channels;
  Module m = newModule("AlbuNetDecoder");
  m.register_module("center", albuBlock(c[4], nf * 8 * 2, nf * 8));
  m.register_module("dec5", albuBlock(c[4] + nf * 8, nf * 8 * 2, nf * 8));
  m.register_module("dec4", albuBlock(c[3] + nf * 8, nf * 8 * 2, nf * 8));
  m.register_module("dec3", albuBlock(c[2] + nf * 8, nf * 4 * 2, nf * 2));
  m.register_module("dec2", albuBlock(c[1] + nf * 2, nf * 2 * 2, nf * 2 * 2));
  m.register_module("dec1", albuBlock(nf * 2 * 2, nf * 2 * 2, nf));
  m.register_module("dec0", convRelu(nf, nf));
  define(m, std::string("def forward(") + kFeatureArgs + "):\n"
            "    center = self.center(torch.max_pool2d(f32, [2, 2], [2, 2], [0, 0], [1, 1], False))\n"
            "    d5 = self.dec5(torch.cat([center, f32], 1))\n"
            "    d4 = self.dec4(torch.cat([d5, f16], 1))\n"
            "    d3 = self.dec3(torch.cat([d4, f8], 1))\n"
            "    d2 = self.dec2(torch.cat([d3, f4], 1))\n"
            "    return self.dec0(self.dec1(d2))\n");
  return m;
}

Module unetppDecoder(const EncoderInfo& enc, const std::vector<int64_t>& widths) {
  // smp UnetPlusPlusDecoder, unrolled: features reversed to [f32, f16, f8, f4, f2].
  const std::vector<int64_t>& c = enc.channels;
  const std::vector<int64_t> encCh = {c[4], c[3], c[2], c[1], c[0]};
  const std::vector<std::string> feat = {"f32", "f16", "f8", "f4", "f2"};
  const std::vector<int64_t> inCh = {encCh[0], widths[0], widths[1], widths[2], widths[3]};
  const std::vector<int64_t> skipCh = {encCh[1], encCh[2], encCh[3], encCh[4], 0};
  const int depth = 4;
  Module m = newModule("UnetPlusPlusDecoder");
  Module blocks = newModule("ModuleDict");
  auto name = [](int d, int l) { return "x_" + std::to_string(d) + "_" + std::to_string(l); };
  for (int l = 0; l < depth; ++l) {
    for (int d = 0; d <= l; ++d) {
      int64_t in, skip, out;
      if (d == 0) {
        in = inCh[l];
        skip = skipCh[l] * (l + 1);
        out = widths[static_cast<size_t>(l)];
      } else {
        out = skipCh[l];
        skip = skipCh[l] * (l + 1 - d);
        in = skipCh[l - 1];
      }
      blocks.register_module(name(d, l), unetBlock(in, skip, out, false));
    }
  }
  blocks.register_module(name(0, depth), unetBlock(inCh[depth], 0, widths[depth], false));
  std::string src = std::string("def forward(") + kFeatureArgs + "):\n";
  for (int l = 0; l < depth; ++l) {
    for (int d = 0; d < depth - l; ++d) {
      if (l == 0) {
        src += "    " + name(d, d) + " = self.blocks." + name(d, d) + "(" + feat[d] + ", " + feat[d + 1] + ")\n";
      } else {
        const int dl = d + l;
        std::string cat = "torch.cat([";
        for (int i = d + 1; i <= dl; ++i) cat += name(i, dl) + ", ";
        cat += feat[dl + 1] + "], 1)";
        src += "    " + name(d, dl) + " = self.blocks." + name(d, dl) + "(" + name(d, dl - 1) + ", " + cat + ")\n";
      }
    }
  }
  src += "    return self.blocks." + name(0, depth) + "(" + name(0, depth - 1) + ")\n";
  m.register_module("blocks", blocks);
  define(m, src);
  return m;
}

Module deeplabDecoder(const EncoderInfo& enc, int64_t width, int64_t outputStride) {
  const int64_t in = enc.channels[4];
  const int64_t base = outputStride == 8 ? 12 : 6;
  Module aspp = newModule("ASPP");
  aspp.register_module("b0", convBnRelu(in, width, 1));
  aspp.register_module("b1", convBnRelu(in, width, 3, base));
  aspp.register_module("b2", convBnRelu(in, width, 3, base * 2));
  aspp.register_module("b3", convBnRelu(in, width, 3, base * 3));
  aspp.register_module("pool", convBnRelu(in, width, 1));
  aspp.register_module("project", convBnRelu(width * 5, width, 1));
  define(aspp, "def forward(self, x):\n"
               "    p = self.pool(torch.adaptive_avg_pool2d(x, [1, 1]))\n"
               "    p = torch.upsample_bilinear2d(p, [x.size(2), x.size(3)], False, None)\n"
               "    y = torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(x), p], 1)\n"
               "    return torch.dropout(self.project(y), 0.5, self.training)\n");
  Module m = newModule("DeepLabV3Decoder");
  m.register_module("aspp", aspp);
  m.register_module("conv", convBnRelu(width, width, 3));
  define(m, std::string("def forward(") + kFeatureArgs + "):\n    return self.conv(self.aspp(f32))\n");
  return m;
}

std::vector<int64_t> widthsOr(const std::vector<int64_t>& given, std::vector<int64_t> fallback, const std::string& arch) {
  if (given.empty()) return fallback;
  if (given.size() != fallback.size()) {
    throw Error("architecture " + arch + " takes " + std::to_string(fallback.size()) + " decoder widths, got " + std::to_string(given.size()));
  }
  for (int64_t w : given) {
    if (w < 1) throw Error("decoder widths must be positive, got " + std::to_string(w));
  }
  return given;
}

}  // namespace

Module buildModel(const ModelSpec& spec, const Encoder& encoder, int64_t* requiredDivisor) {
  const std::string& arch = spec.architecture;
  const EncoderInfo& enc = encoder.info;
  if (hasAuxiliaryHeads(arch)) {
    *requiredDivisor = 32;
    return buildSeed42Model(spec, encoder);
  }
  Module decoder;
  int64_t headIn = 0;
  int64_t divisor = 32;
  bool upsampleToInput = false;
  if (arch == "unet" || arch == "scseunet") {
    const auto widths = widthsOr(spec.decoderChannels, {256, 128, 64, 32, 16}, arch);
    if (arch == "scseunet") {
      for (int64_t w : widths) {
        if (w < 2) throw Error("scseunet decoder widths must be at least 2 (SCSE reduction 2), got " + std::to_string(w));
      }
    }
    decoder = unetDecoder(enc, widths, arch == "scseunet");
    headIn = widths[4];
  } else if (arch == "unetpp") {
    const auto widths = widthsOr(spec.decoderChannels, {256, 128, 64, 32, 16}, arch);
    decoder = unetppDecoder(enc, widths);
    headIn = widths[4];
  } else if (arch == "albunet") {
    if (!spec.decoderChannels.empty()) throw Error("albunet has fixed decoder widths (256/256/256/64/128/32); leave decoderChannels empty");
    decoder = albunetDecoder(enc);
    headIn = 32;
    divisor = 64;
  } else if (arch == "deeplabv3") {
    const auto widths = widthsOr(spec.decoderChannels, {256}, arch);
    decoder = deeplabDecoder(enc, widths[0], enc.strides[4]);
    headIn = widths[0];
    upsampleToInput = true;
  } else {
    throw Error("unknown architecture '" + arch + "' (unet, scseunet, albunet, unetpp, deeplabv3, bisenet, daunet)");
  }
  Module model = newModule("SegmentationModel");
  model.register_module("encoder", encoder.module);
  model.register_module("decoder", decoder);
  // AlbuNet's final layer is a 1x1 conv; smp's heads are 3x3 (DeepLabV3's 1x1).
  const int64_t headKernel = arch == "unet" || arch == "scseunet" || arch == "unetpp" ? 3 : 1;
  model.register_module("segmentation_head", conv2d(headIn, spec.classes, headKernel, {.padding = headKernel / 2, .bias = true}));
  std::ostringstream src;
  src << "def forward(self, x):\n"
      << "    h = x.size(2)\n    w = x.size(3)\n"
      << "    f = self.encoder(x)\n"
      << "    y = self.segmentation_head(self.decoder(f[0], f[1], f[2], f[3], f[4]))\n";
  if (upsampleToInput) src << "    y = torch.upsample_bilinear2d(y, [h, w], False, None)\n";
  if (spec.classificationHead) {
    Module head = newModule("ClassificationHead");
    head.register_module("fc", linear(enc.channels[4], 1));
    define(head, "def forward(self, x):\n    return self.fc(torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1))\n");
    model.register_module("classification_head", head);
    src << "    return (y, self.classification_head(f[4]))\n";
  } else {
    src << "    return y\n";
  }
  define(model, src.str());
  *requiredDivisor = divisor;
  return model;
}

}  // namespace pn::zoo
