// The torch-free API of pneumo-native's losses, for native/binding/ (napi.h + torch-free headers only).
// The trainer uses the torch-side API in losses.h directly; this wrapper runs one forward and
// backward for JS (tests, benchmarks, tools). Every function succeeds or throws pn::Error.
#pragma once

#include <string>

#include "../core/api.h"

namespace pn {

enum class LossKind {
  /** The fused combo loss (losses.h comboLoss). */
  Combo,
  /** The same loss as a plain ATen composition (the unfused baseline). */
  ComboReference,
  SoftDice,
  BalancedBce,
  Lovasz,
};

/** Parses "combo", "combo-reference", "soft-dice", "balanced-bce", "lovasz"; false when unknown. */
bool parseLossKind(const std::string& name, LossKind* out);

/** Options of every loss kind (each kind reads its own). */
struct LossOptions {
  double bceWeight = 1.0;
  double diceWeight = 1.0;
  double focalWeight = 1.0;
  bool perImageDice = false;
  /** soft-dice smoothing. */
  double smooth = 0.01;
  /** balanced-bce weight of the positive pixels. */
  double alpha = 0.25;
  double positiveMargin = 5.0;
  double negativeMargin = 1.0;
  bool symmetric = true;
};

struct LossResult {
  double loss = 0;
  /** dLoss/dlogits, same shape as the logits (float32, or float64 for float64 logits). */
  Tensor grad;
};

/**
 * Evaluates the loss of `logits` against `target` and its gradient with respect to the logits
 * (autograd on a detached copy: the caller's tensors are not touched).
 */
LossResult lossForwardBackward(LossKind kind, const Tensor& logits, const Tensor& target, const LossOptions& options);

}  // namespace pn
