// The losses that autograd differentiates through ATen ops (soft Dice, class-balanced BCE, the
// symmetric Lovasz hinge), and the torch-free wrapper that the N-API layer (native/binding/) calls (loss_api.h).
#include "../core/torch_internal.h"
#include "loss_api.h"
#include "losses.h"

namespace pn::losses {

at::Tensor softDiceLoss(const at::Tensor& logits, const at::Tensor& target, double smooth) {
  TORCH_CHECK(smooth >= 0, "softDiceLoss: smooth must be >= 0, got ", smooth);
  auto [x, t] = prepareLossInputs("softDiceLoss", logits, target);
  const int64_t images = x.size(0);
  const at::Tensor p = torch::sigmoid(x).reshape({images, -1});
  const at::Tensor ti = t.reshape({images, -1});
  const at::Tensor num = 2 * (p * ti).sum(1) + smooth;
  const at::Tensor den = (p * p).sum(1) + (ti * ti).sum(1) + smooth;
  return (1 - num / den).mean();
}

at::Tensor balancedBceLoss(const at::Tensor& logits, const at::Tensor& target, double alpha) {
  TORCH_CHECK(alpha >= 0 && alpha <= 1, "balancedBceLoss: alpha must be in [0, 1], got ", alpha);
  auto [x, t] = prepareLossInputs("balancedBceLoss", logits, target);
  const at::Tensor bce = torch::binary_cross_entropy_with_logits(x, t, {}, {}, at::Reduction::None);
  const at::Tensor positive = (t > 0.5).to(x.scalar_type());
  const at::Tensor negative = 1 - positive;
  // A class with no pixel contributes 0 (its sum is 0; the count is clamped to avoid 0 / 0).
  const at::Tensor positiveMean = (bce * positive).sum() / positive.sum().clamp_min(1);
  const at::Tensor negativeMean = (bce * negative).sum() / negative.sum().clamp_min(1);
  return alpha * positiveMean + (1 - alpha) * negativeMean;
}

namespace {

/** Per row of [B, n]: the Lovasz hinge of `errors` given binary labels. */
at::Tensor lovaszRows(const at::Tensor& logits, const at::Tensor& labels, double positiveMargin, double negativeMargin) {
  const at::Tensor signs = 2 * labels - 1;
  const at::Tensor margins = labels * positiveMargin + (1 - labels) * negativeMargin;
  const at::Tensor errors = margins - logits * signs;
  // A stable sort: ties keep pixel order, so the gradient is deterministic.
  auto [sorted, order] = at::sort(errors, /*stable=*/true, /*dim=*/1, /*descending=*/true);
  const at::Tensor gt = labels.gather(1, order);
  // Gradient of the Lovasz extension of the Jaccard loss (a constant of the labels).
  const at::Tensor gts = gt.sum(1, /*keepdim=*/true);
  const at::Tensor intersection = gts - gt.cumsum(1);
  const at::Tensor unionCount = gts + (1 - gt).cumsum(1);
  const at::Tensor jaccard = 1 - intersection / unionCount;
  const int64_t n = jaccard.size(1);
  const at::Tensor weights =
      n > 1 ? at::cat({jaccard.narrow(1, 0, 1), jaccard.narrow(1, 1, n - 1) - jaccard.narrow(1, 0, n - 1)}, 1) : jaccard;
  return (torch::relu(sorted) * weights).sum(1);
}

}  // namespace

at::Tensor lovaszHingeLoss(const at::Tensor& logits, const at::Tensor& target, const LovaszOptions& options) {
  auto [x, t] = prepareLossInputs("lovaszHingeLoss", logits, target);
  const int64_t images = x.size(0);
  const at::Tensor rows = x.reshape({images, -1});
  const at::Tensor labels = (t.reshape({images, -1}) > 0.5).to(x.scalar_type());
  at::Tensor perImage = lovaszRows(rows, labels, options.positiveMargin, options.negativeMargin);
  if (options.symmetric) {
    perImage = (perImage + lovaszRows(-rows, 1 - labels, options.positiveMargin, options.negativeMargin)) / 2;
  }
  return perImage.mean();
}

}  // namespace pn::losses

namespace pn {

bool parseLossKind(const std::string& name, LossKind* out) {
  static const std::pair<const char*, LossKind> kNames[] = {{"combo", LossKind::Combo},
                                                             {"combo-reference", LossKind::ComboReference},
                                                             {"soft-dice", LossKind::SoftDice},
                                                             {"balanced-bce", LossKind::BalancedBce},
                                                             {"lovasz", LossKind::Lovasz}};
  for (const auto& [n, k] : kNames) {
    if (name == n) {
      *out = k;
      return true;
    }
  }
  return false;
}

LossResult lossForwardBackward(LossKind kind, const Tensor& logits, const Tensor& target, const LossOptions& options) {
  return guard([&] {
    torch::AutoGradMode gradMode(true);
    const at::Tensor& input = unwrap(logits);
    TORCH_CHECK(at::isFloatingType(input.scalar_type()), "lossForwardBackward: logits must be a floating-point tensor, got ",
                input.scalar_type());
    at::Tensor x = input.detach().requires_grad_(true);
    const at::Tensor& t = unwrap(target);
    const losses::ComboOptions combo{options.bceWeight, options.diceWeight, options.focalWeight, options.perImageDice};
    at::Tensor loss;
    switch (kind) {
      case LossKind::Combo: loss = losses::comboLoss(x, t, combo); break;
      case LossKind::ComboReference: loss = losses::comboLossReference(x, t, combo); break;
      case LossKind::SoftDice: loss = losses::softDiceLoss(x, t, options.smooth); break;
      case LossKind::BalancedBce: loss = losses::balancedBceLoss(x, t, options.alpha); break;
      case LossKind::Lovasz:
        loss = losses::lovaszHingeLoss(x, t, {options.positiveMargin, options.negativeMargin, options.symmetric});
        break;
    }
    loss.backward();
    LossResult result;
    result.loss = loss.item<double>();
    result.grad = wrap(x.grad());
    return result;
  });
}

}  // namespace pn
