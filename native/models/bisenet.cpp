// The 42nd place's two architectures (SPEC 6; github.com/adam9500370/Kaggle-SIIM, models/), with
// the parameter names of its PyTorch modules except the backbone, which is `encoder` here (the
// zoo's contract; the seed's `context_path.backbone` / `backbone`):
//   bisenet  BiSeNet: a spatial path (three stride-2 Conv3x3-BN-ReLU to stride 8), a context path
//            on the encoder (attention refinement modules on f8/f16/f32 plus the global-pooled f32,
//            fused top-down), the feature fusion module, the dual-attention head, a stride-8
//            classifier upsampled to the input size. Width: decoderChannels [sc] (the seed's 128).
//   daunet   the seed's UNet: pyramid pooling (sum of average pools 6/3/2/1) on f32, 1x1 lateral
//            convs, concat + (Conv3x3-BN-ReLU) x2 at strides 16, 8, 4, 2, the dual-attention head
//            at stride 8, the classifier at the input size. Widths: decoderChannels (the seed's
//            128, 64, 32, 16, 8 on ResNet18).
// Both add a global-pooling classifier (`aux_cls_gap`) whose logit is added to the mask logits
// through a learned scalar (`gamma_gap`, starting at 0) and is the classification logit when the
// spec asks for a classification head, and auxiliary heads (bisenet: on the context path at
// strides 8, 16, 32; daunet: on the pyramid pooling and the upsampled stride-8 features), each
// Conv-BN-ReLU, Dropout2d(0.1), Conv1x1, bilinearly upsampled to the input size.
//
// `forward` (every caller: inference, export, SWA) returns the main output as every zoo model
// does; `forward_train` (the training engine) returns (mask, label, [auxiliary masks]).
// The dual-attention head (DANet, Fu et al. 2019, as the seed wrote it):
//   pam  position attention: query/key 1x1 conv to C/2 (one conv shared by query and key, the
//        seed's `key_conv = query_conv`; its state dicts also list `pam.key_conv.*`), value 1x1
//        conv, softmax over positions, `gamma * out + x` with gamma starting at 0
//   cam  channel attention: softmax of (rowmax(E) - E) for E = X X^T, `gamma * out + x`
// each followed by a Conv3x3-BN-ReLU, the two summed.
#include "model_internal.h"

namespace pn::zoo {

namespace seed42 {

/**
 * BatchNorm2d for globally pooled (1 x 1) features. A training batch of one image gives one value
 * per channel, which BatchNorm cannot normalise (PyTorch raises; the seed's loader dropped
 * incomplete batches): such a batch is normalised with the running statistics, left unchanged.
 */
Module pooledBatchNorm(int64_t channels) {
  Module m = newModule("BatchNorm2d");
  m.register_parameter("weight", torch::ones({channels}).set_requires_grad(true), false);
  m.register_parameter("bias", torch::zeros({channels}).set_requires_grad(true), false);
  m.register_buffer("running_mean", torch::zeros({channels}));
  m.register_buffer("running_var", torch::ones({channels}));
  m.register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
  define(m, "def forward(self, x):\n"
            "    batch = self.training and x.size(0) * x.size(2) * x.size(3) > 1\n"
            "    if batch:\n"
            "        self.num_batches_tracked.add_(1)\n"
            "    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, batch, 0.1, 1e-05, True)\n");
  return m;
}

/** The seed's ConvBatchNormRelu: `cbr_unit` ("0" conv, "1" BatchNorm unless norm is off), ReLU. */
Module cbr(int64_t in, int64_t out, int64_t kernel, int64_t stride, bool norm = true, bool pooled = false) {
  Module unit = newModule("Sequential");
  unit.register_module("0", conv2d(in, out, kernel, {.stride = stride, .padding = kernel / 2, .bias = !norm}));
  if (norm) unit.register_module("1", pooled ? pooledBatchNorm(out) : batchNorm(out));
  define(unit, norm ? "def forward(self, x):\n    return torch.relu_(getattr(self, \"1\")(getattr(self, \"0\")(x)))\n"
                    : "def forward(self, x):\n    return torch.relu_(getattr(self, \"0\")(x))\n");
  Module m = newModule("ConvBatchNormRelu");
  m.register_module("cbr_unit", unit);
  define(m, "def forward(self, x):\n    return self.cbr_unit(x)\n");
  return m;
}

/** The seed's ConvBatchNorm: `cb_unit` ("0" conv, "1" BatchNorm unless norm is off). */
Module cb(int64_t in, int64_t out, bool norm) {
  Module unit = newModule("Sequential");
  unit.register_module("0", conv2d(in, out, 1, {.bias = !norm}));
  if (norm) unit.register_module("1", pooledBatchNorm(out));  // only used on pooled features
  define(unit, norm ? "def forward(self, x):\n    return getattr(self, \"1\")(getattr(self, \"0\")(x))\n"
                    : "def forward(self, x):\n    return getattr(self, \"0\")(x)\n");
  Module m = newModule("ConvBatchNorm");
  m.register_module("cb_unit", unit);
  define(m, "def forward(self, x):\n    return self.cb_unit(x)\n");
  return m;
}

/** nn.Sequential of the named children with `source` as its forward. */
Module seq(const std::vector<std::pair<std::string, Module>>& children, const std::string& source) {
  Module m = newModule("Sequential");
  for (const auto& [name, child] : children) m.register_module(name, child);
  define(m, source);
  return m;
}

/** Attention refinement module: cbr 3x3, then x * sigmoid(BN(conv1x1(GAP(x)))) ("arm.1"). */
Module arm(int64_t in, int64_t out) {
  Module m = newModule("ARM");
  m.register_module("cbr", cbr(in, out, 3, 1));
  m.register_module("arm", seq({{"1", cb(out, out, true)}},
                               "def forward(self, x):\n"
                               "    return torch.sigmoid(getattr(self, \"1\")(torch.adaptive_avg_pool2d(x, [1, 1])))\n"));
  define(m, "def forward(self, x):\n    x = self.cbr(x)\n    return x * self.arm(x)\n");
  return m;
}

/** Feature fusion module: cbr 1x1 on cat(spatial, context), then x + x * cSE(x) (reduction 2). */
Module ffm(int64_t in, int64_t out) {
  Module m = newModule("FFM");
  m.register_module("cbr", cbr(in, out, 1, 1));
  m.register_module("cse", seq({{"1", cbr(out, out / 2, 1, 1, false)}, {"2", cb(out / 2, out, false)}},
                               "def forward(self, x):\n"
                               "    s = torch.adaptive_avg_pool2d(x, [1, 1])\n"
                               "    return torch.sigmoid(getattr(self, \"2\")(getattr(self, \"1\")(s)))\n"));
  define(m, "def forward(self, xs, xc):\n"
            "    x = self.cbr(torch.cat([xs, xc], 1))\n"
            "    return x + x * self.cse(x)\n");
  return m;
}

/** Position attention (reduction 2; query and key share one conv, as in the seed). */
Module pam(int64_t channels) {
  Module m = newModule("PAM");
  m.register_module("query_conv", conv2d(channels, channels / 2, 1, {.bias = true}));
  m.register_module("value_conv", conv2d(channels, channels, 1, {.bias = true}));
  m.register_parameter("gamma", torch::zeros({1}).set_requires_grad(true), false);
  define(m, "def forward(self, x):\n"
            "    b = x.size(0)\n    c = x.size(1)\n    h = x.size(2)\n    w = x.size(3)\n"
            "    q = self.query_conv(x).reshape([b, -1, h * w])\n"
            "    attention = torch.softmax(torch.bmm(q.permute([0, 2, 1]), q), -1)\n"
            "    v = self.value_conv(x).reshape([b, -1, h * w])\n"
            "    out = torch.bmm(v, attention.permute([0, 2, 1])).reshape([b, c, h, w])\n"
            "    return self.gamma * out + x\n");
  return m;
}

/**
 * Channel attention: softmax(rowmax(E) - E) with E = X X^T over the flattened positions. E sums
 * h*w products (9,216 at stride 8 of 768 px), past float16's 65,504 under fp16 autocast: the
 * product is taken of X / sqrt(h*w) (a mean, bounded by the activations' square) and scaled back
 * in float32, where the rest of the softmax runs. In float32 it equals the plain product up to
 * rounding.
 */
Module cam() {
  Module m = newModule("CAM");
  m.register_parameter("gamma", torch::zeros({1}).set_requires_grad(true), false);
  define(m, "def forward(self, x):\n"
            "    b = x.size(0)\n    c = x.size(1)\n    h = x.size(2)\n    w = x.size(3)\n"
            "    q = x.reshape([b, c, h * w])\n"
            "    s = float(h * w) ** 0.5\n"
            "    qs = q / s\n"
            "    energy = torch.bmm(qs, qs.permute([0, 2, 1])).float() * (s * s)\n"
            "    energy = torch.amax(energy, [-1], True).expand_as(energy) - energy\n"
            "    out = torch.bmm(torch.softmax(energy, -1), q).reshape([b, c, h, w])\n"
            "    return self.gamma * out + x\n");
  return m;
}

/** Classifier / auxiliary head: "0" cbr (kernel 1 or 3), "1" Dropout2d(0.1), "2" conv1x1 with bias. */
Module head(int64_t in, int64_t mid, int64_t classes, int64_t kernel, bool pooled = false) {
  return seq({{"0", cbr(in, mid, kernel, 1, true, pooled)}, {"2", conv2d(mid, classes, 1, {.bias = true})}},
             "def forward(self, x):\n"
             "    x = torch.feature_dropout(getattr(self, \"0\")(x), 0.1, self.training)\n"
             "    return getattr(self, \"2\")(x)\n");
}

/** Pyramid pooling, the seed's "sum" mode (no parameters): the sum of average pools 6, 3, 2, 1, upsampled. */
Module ppm() {
  Module m = newModule("PPM");
  // The seed's pools: stride (h // p, w // p) and kernel h - stride * (p - 1), i.e. adaptive
  // pooling when h and w divide by p (f32 of a 768 input is 24 x 24); below p pixels the seed's
  // formula has no stride, and adaptive pooling (which repeats pixels) is used.
  define(m, "def forward(self, x):\n"
            "    h = x.size(2)\n    w = x.size(3)\n"
            "    out = torch.zeros_like(x)\n"
            "    for p in [6, 3, 2, 1]:\n"
            "        sh = h // p\n        sw = w // p\n"
            "        if sh > 0 and sw > 0:\n"
            "            y = torch.avg_pool2d(x, [h - sh * (p - 1), w - sw * (p - 1)], [sh, sw], [0, 0], False, True, None)\n"
            "        else:\n"
            "            y = torch.adaptive_avg_pool2d(x, [p, p])\n"
            "        out = out + torch.upsample_bilinear2d(y, [h, w], False, None)\n"
            "    return out\n");
  return m;
}

const char* kUp = "torch.upsample_bilinear2d";

Module bisenet(const ModelSpec& spec, const Encoder& encoder) {
  const auto& c = encoder.info.channels;
  const int64_t sc = spec.decoderChannels.empty() ? 128 : spec.decoderChannels[0];
  if (sc < 4 || sc % 4 != 0) throw Error("bisenet takes decoderChannels [width] with a width divisible by 4 (the seed's 128), got " + std::to_string(sc));
  const int64_t k = spec.classes;
  Module model = newModule("BiSeNet");
  model.register_module("encoder", encoder.module);
  model.register_module("spatial_path", seq({{"cbr1", cbr(spec.inChannels, sc / 2, 3, 2)}, {"cbr2", cbr(sc / 2, sc / 2, 3, 2)}, {"cbr3", cbr(sc / 2, sc, 3, 2)}},
                                            "def forward(self, x):\n    return self.cbr3(self.cbr2(self.cbr1(x)))\n"));
  Module context = newModule("ContextPath");
  context.register_module("arm_32x", arm(c[4], sc));
  context.register_module("arm_16x", arm(c[3], sc));
  context.register_module("arm_8x", arm(c[2], sc));
  context.register_module("cbr_gap", cbr(c[4], sc, 1, 1, true, true));
  context.register_module("cbr_32x", cbr(sc, sc, 3, 1));
  context.register_module("cbr_16x", cbr(sc, sc, 3, 1));
  context.register_module("cbr_8x", cbr(sc, sc, 3, 1));
  define(context, std::string("def forward(self, f8, f16, f32):\n"
                              "    gap = self.cbr_gap(torch.adaptive_avg_pool2d(f32, [1, 1]))\n"
                              "    c32 = self.cbr_32x(self.arm_32x(f32) + gap)\n"
                              "    c16 = self.cbr_16x(self.arm_16x(f16) + ") + kUp + "(c32, [f16.size(2), f16.size(3)], False, None))\n"
                              "    c8 = self.cbr_8x(self.arm_8x(f8) + " + kUp + "(c16, [f8.size(2), f8.size(3)], False, None))\n"
                              "    return (c8, c16, c32, gap)\n");
  model.register_module("context_path", context);
  model.register_module("ffm", ffm(sc * 2, sc));
  model.register_module("pam", pam(sc));
  model.register_module("cam", cam());
  model.register_module("cbr_pam", cbr(sc, sc, 3, 1));
  model.register_module("cbr_cam", cbr(sc, sc, 3, 1));
  model.register_parameter("gamma_gap", torch::zeros({1}).set_requires_grad(true), false);
  model.register_module("aux_cls_gap", head(sc, sc / 4, k, 1, true));
  model.register_module("aux_cls_8x", head(sc, sc / 4, k, 3));
  model.register_module("aux_cls_16x", head(sc, sc / 4, k, 3));
  model.register_module("aux_cls_32x", head(sc, sc / 4, k, 3));
  model.register_module("cls", head(sc, sc / 4, k, 3));
  const std::string body = std::string(
                               "    h = x.size(2)\n    w = x.size(3)\n"
                               "    f = self.encoder(x)\n"
                               "    s8 = self.spatial_path(x)\n"
                               "    c8, c16, c32, gap = self.context_path(f[2], f[3], f[4])\n"
                               "    g = self.aux_cls_gap(gap)\n"
                               "    ff = self.ffm(s8, c8)\n"
                               "    d = self.cbr_pam(self.pam(ff)) + self.cbr_cam(self.cam(ff))\n"
                               "    y = ") + kUp + "(self.cls(d) + self.gamma_gap * g, [h, w], False, None)\n";
  define(model, "def forward(self, x):\n" + body + (spec.classificationHead ? "    return (y, torch.flatten(g, 1))\n" : "    return y\n"));
  define(model, "def forward_train(self, x):\n" + body + "    a8 = " + kUp + "(self.aux_cls_8x(c8), [h, w], False, None)\n" + "    a16 = " + kUp +
                    "(self.aux_cls_16x(c16), [h, w], False, None)\n" + "    a32 = " + kUp + "(self.aux_cls_32x(c32), [h, w], False, None)\n" +
                    "    return (y, torch.flatten(g, 1), [a8, a16, a32])\n");
  return model;
}

Module daunet(const ModelSpec& spec, const Encoder& encoder) {
  const auto& c = encoder.info.channels;
  std::vector<int64_t> wd = spec.decoderChannels.empty() ? std::vector<int64_t>{128, 64, 32, 16, 8} : spec.decoderChannels;
  if (wd.size() != 5) throw Error("architecture daunet takes 5 decoder widths, got " + std::to_string(wd.size()));
  for (int64_t v : wd) {
    if (v < 2) throw Error("daunet decoder widths must be at least 2 (position attention halves the stride-8 width), got " + std::to_string(v));
  }
  const int64_t k = spec.classes;
  Module model = newModule("DAUnet");
  model.register_module("encoder", encoder.module);
  model.register_module("ppm", ppm());
  model.register_module("c1br_16x", cbr(c[3], wd[0], 1, 1));
  model.register_module("c1br_8x", cbr(c[2], wd[1], 1, 1));
  model.register_module("c1br_4x", cbr(c[1], wd[2], 1, 1));
  model.register_module("c1br_2x", cbr(c[0], wd[3], 1, 1));
  model.register_module("c3br_ppm", cbr(c[4], wd[0], 3, 1));
  const char* twice = "def forward(self, x):\n    return getattr(self, \"1\")(getattr(self, \"0\")(x))\n";
  model.register_module("c3br2_16x", seq({{"0", cbr(wd[0] * 2, wd[1], 3, 1)}, {"1", cbr(wd[1], wd[1], 3, 1)}}, twice));
  model.register_module("c3br2_8x", seq({{"0", cbr(wd[1] * 2, wd[2], 3, 1)}, {"1", cbr(wd[2], wd[2], 3, 1)}}, twice));
  model.register_module("c3br2_4x", seq({{"0", cbr(wd[2] * 2, wd[3], 3, 1)}, {"1", cbr(wd[3], wd[3], 3, 1)}}, twice));
  model.register_module("c3br2_2x", seq({{"0", cbr(wd[3] * 2, wd[4], 3, 1)}, {"1", cbr(wd[4], wd[4], 3, 1)}}, twice));
  model.register_module("pam", pam(wd[2]));
  model.register_module("cam", cam());
  model.register_module("c3br_pam", cbr(wd[2], wd[2], 3, 1));
  model.register_module("c3br_cam", cbr(wd[2], wd[2], 3, 1));
  model.register_parameter("gamma_gap", torch::zeros({1}).set_requires_grad(true), false);
  model.register_module("aux_cls_gap", head(wd[0], wd[2], k, 1, true));
  model.register_module("aux_cls_ppm", head(wd[0], wd[2], k, 3));
  model.register_module("aux_cls_4x", head(wd[2], wd[4], k, 3));
  model.register_module("cls", head(wd[4], wd[4], k, 3));
  const std::string up = kUp;
  const std::string body =
      "    h = x.size(2)\n    w = x.size(3)\n"
      "    f = self.encoder(x)\n"
      "    p = self.c3br_ppm(self.ppm(f[4]))\n"
      "    gap = torch.adaptive_avg_pool2d(p, [1, 1])\n"
      "    d16 = self.c1br_16x(f[3])\n"
      "    d16 = self.c3br2_16x(torch.cat([d16, " + up + "(p, [d16.size(2), d16.size(3)], False, None)], 1))\n"
      "    d8 = self.c1br_8x(f[2])\n"
      "    d8 = self.c3br2_8x(torch.cat([d8, " + up + "(d16, [d8.size(2), d8.size(3)], False, None)], 1))\n"
      "    d8 = self.c3br_pam(self.pam(d8)) + self.c3br_cam(self.cam(d8))\n"
      "    d4 = self.c1br_4x(f[1])\n"
      "    u8 = " + up + "(d8, [d4.size(2), d4.size(3)], False, None)\n"
      "    d4 = self.c3br2_4x(torch.cat([d4, u8], 1))\n"
      "    d2 = self.c1br_2x(f[0])\n"
      "    d2 = self.c3br2_2x(torch.cat([d2, " + up + "(d4, [d2.size(2), d2.size(3)], False, None)], 1))\n"
      "    g = self.aux_cls_gap(gap)\n"
      "    y = self.cls(" + up + "(d2, [h, w], False, None)) + self.gamma_gap * g\n";
  define(model, "def forward(self, x):\n" + body + (spec.classificationHead ? "    return (y, torch.flatten(g, 1))\n" : "    return y\n"));
  define(model, "def forward_train(self, x):\n" + body + "    a4 = " + up + "(self.aux_cls_4x(u8), [h, w], False, None)\n" + "    appm = " + up +
                    "(self.aux_cls_ppm(p), [h, w], False, None)\n" + "    return (y, torch.flatten(g, 1), [a4, appm])\n");
  return model;
}

}  // namespace seed42

bool hasAuxiliaryHeads(const std::string& architecture) { return architecture == "bisenet" || architecture == "daunet"; }

Module buildSeed42Model(const ModelSpec& spec, const Encoder& encoder) {
  if (spec.classificationHead && spec.classes != 1) {
    throw Error(spec.architecture + "'s classification logit is its global-pooling head, one per class: a classification head needs classes 1, got " +
                std::to_string(spec.classes));
  }
  if (spec.architecture == "bisenet") {
    if (spec.decoderChannels.size() > 1) throw Error("architecture bisenet takes 1 decoder width, got " + std::to_string(spec.decoderChannels.size()));
    return seed42::bisenet(spec, encoder);
  }
  return seed42::daunet(spec, encoder);
}

}  // namespace pn::zoo
