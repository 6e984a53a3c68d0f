// Schemas of the gradient_match family (DC's gradient-matching distance, optionally batched over classes).
//   grads_real[i], grads_syn[i]: one entry per network parameter, (K, *param_shape_i) when batched,
//   param_shape_i otherwise (K = 1).
//   metric: "ours" (per-row cosine distances, 1-D params contribute 0), "mse", "cos".
//   Returns loss ((K,) when batched, else 0-dim) in the gradients' dtype and stats (K, S, 3) float64,
//   kept for backward: (dot, |real|, |syn|) per row for ours (S = rows), per class for cos (S = 1);
//   S = 0 for mse.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(medistill, m) {
  m.def("gradient_match(Tensor[] grads_real, Tensor[] grads_syn, str metric, bool batched) -> (Tensor, Tensor)");
  // Returns the gradients w.r.t. grads_real (empty list unless need_real) and grads_syn (empty
  // unless need_syn); grad_loss has the loss's shape.
  m.def(
      "gradient_match_backward(Tensor grad_loss, Tensor[] grads_real, Tensor[] grads_syn, Tensor stats, "
      "str metric, bool batched, bool need_real, bool need_syn) -> (Tensor[], Tensor[])");
}
