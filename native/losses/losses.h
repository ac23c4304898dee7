// The torch-side API of pneumo-native's segmentation losses (SPEC sections 4-6), for the native
// trainer. Every function takes raw logits and a target of the same shape ([B, ...], batch first,
// any float/integer/bool dtype: it is converted to the logits' dtype), returns a 0-dim tensor and
// is differentiable with respect to the logits under autograd. half/bfloat16 logits are computed
// in float32 (the cast is part of the graph). Errors are c10::Error (wrap calls in pn::guard at the
// boundary). The torch-free wrapper for the N-API layer (native/binding/) is loss_api.h.
#pragma once

#include <torch/torch.h>

namespace pn::losses {

/**
 * The first place's combo loss (SPEC section 4):
 *   clamp_min(wb * BCE + wd * Dice + wf * Focal, 1e-5)
 * - BCE: stable binary cross-entropy on logits, mean over every pixel;
 * - Dice: 1 - (2 sum(p t) + 1e-6) / (sum(p) + sum(t) + 1e-6) on p = sigmoid(logits), over the whole
 *   batch, or per image then averaged (perImageDice);
 * - Focal: mean(-(1 - pt)^2 log(pt)), pt = (1 - t)(1 - pc) + t pc, pc = clamp(p, 1e-8, 1 - 1e-8);
 *   gamma 2, no alpha. The clamp bounds hold on pt exactly (1 - p is computed from the logit, not
 *   by rounding p), so a confidently wrong float32 pixel costs -log(1e-8) rather than the inf that
 *   the float32 composition gives once p rounds to 1.
 */
struct ComboOptions {
  double bceWeight = 1.0;
  double diceWeight = 1.0;
  double focalWeight = 1.0;
  /** Dice per image (first dimension), averaged; false: one Dice over the whole batch. */
  bool perImageDice = false;
};

/**
 * The fused combo loss: a custom autograd function whose forward computes the sigmoid once and
 * every sum in one parallel, vectorised pass over the logits (a CUDA kernel on GPU builds), and
 * whose backward writes dL/dlogits for all three terms in one pass. Deterministic: partial sums are
 * taken over fixed chunks and added in a fixed order, whatever the thread count.
 */
at::Tensor comboLoss(const at::Tensor& logits, const at::Tensor& target, const ComboOptions& options = {});

/** The same loss as a plain composition of ATen ops (the unfused baseline and a test reference). */
at::Tensor comboLossReference(const at::Tensor& logits, const at::Tensor& target, const ComboOptions& options = {});

/**
 * The second place's soft Dice (SPEC section 5): per image b,
 *   1 - (2 sum(p t) + smooth) / (sum(p^2) + sum(t^2) + smooth), p = sigmoid(logits),
 * averaged over the batch.
 */
at::Tensor softDiceLoss(const at::Tensor& logits, const at::Tensor& target, double smooth = 0.01);

/**
 * Class-balanced BCE (SPEC section 6): alpha * mean BCE over positive pixels (t > 0.5) +
 * (1 - alpha) * mean BCE over negative pixels, over the batch; a class with no pixel adds 0.
 */
at::Tensor balancedBceLoss(const at::Tensor& logits, const at::Tensor& target, double alpha = 0.25);

/** Margins and symmetry of the Lovasz hinge. */
struct LovaszOptions {
  /** Hinge margin on positive pixels: error = margin - logit * sign. */
  double positiveMargin = 5.0;
  double negativeMargin = 1.0;
  /** Average with the same loss on the flipped problem (-logits, 1 - target). */
  bool symmetric = true;
};

/**
 * The Lovasz hinge (Berman et al. 2018) per image, averaged over the batch: errors
 * m_i - x_i s_i (s = 2t - 1, m the margin of the pixel's class) sorted in decreasing order, dotted
 * with the gradient of the Lovasz extension of the Jaccard loss, relu applied to the errors. With
 * `symmetric`, (L(x, t) + L(-x, 1 - t)) / 2, where the flipped problem's positives (the original
 * negatives) take the positive margin (SPEC section 6). An image with no positive pixel is fine
 * (its loss is the largest hinge error).
 */
at::Tensor lovaszHingeLoss(const at::Tensor& logits, const at::Tensor& target, const LovaszOptions& options = {});

/**
 * The input checks every loss shares: same shape and device, floating logits, a batch dimension;
 * returns contiguous (logits, detached target), both float64 when the logits are, else float32.
 * `name` prefixes the error message.
 */
std::pair<at::Tensor, at::Tensor> prepareLossInputs(const char* name, const at::Tensor& logits, const at::Tensor& target);

}  // namespace pn::losses
