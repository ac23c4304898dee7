// Launchers of the fused combo-loss CUDA kernels (combo_loss.cu), in plain C++ types so that the
// .cu file needs no LibTorch headers. Declared only in CUDA builds (PN_WITH_CUDA). All pointers are
// device pointers; every launcher is asynchronous on `stream` (no host synchronisation).
#pragma once

#ifdef PN_WITH_CUDA
#include <cstdint>

namespace pn::cuda {

/** What the combo loss needs besides the tensors (SPEC section 4 constants live in the kernels). */
struct ComboConfig {
  int64_t numel = 0;
  /** Images in the batch (first dimension); numel is a multiple of it. */
  int64_t images = 1;
  double bceWeight = 1.0;
  double diceWeight = 1.0;
  double focalWeight = 1.0;
  bool perImageDice = false;
  /** Elements are double (true) or float (false). */
  bool isDouble = false;
};

/** Blocks per image the forward uses: size the partials workspace as images * this * 5 doubles. */
int64_t comboForwardBlocksPerImage(const ComboConfig& config);

/**
 * Forward: per-image sums (BCE, focal, p*t, p, t) into `partials` (images * blocksPerImage * 5),
 * then one block reduces them in a fixed order and writes the loss (a float or double scalar, as
 * the logits) to `loss` and the backward coefficients to `coef` (images * 2 + 1 doubles).
 */
void comboForward(const void* logits, const void* target, const ComboConfig& config, double* partials, double* coef,
                  void* loss, void* stream);

/** Backward: grad[i] = dL/dlogits[i] * (*gradOutput), from the forward's coefficients. */
void comboBackward(const void* logits, const void* target, const ComboConfig& config, const double* coef,
                   const void* gradOutput, void* grad, void* stream);

}  // namespace pn::cuda
#endif
