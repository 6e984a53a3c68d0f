// Schemas of the trajectory_match family (MTT's normalised parameter distance).
//   w_student, w_target, w_start: (P,) flat parameter vectors.
//   Returns loss = ||w_student - w_target||^2 / ||w_start - w_target||^2 (0-dim, inputs' dtype) and
//   stats (2,) float64 = (numerator, denominator), kept for backward.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(medistill, m) {
  m.def("trajectory_match(Tensor w_student, Tensor w_target, Tensor w_start) -> (Tensor, Tensor)");
  // Gradients w.r.t. (w_student, w_target, w_start), only those whose flag is set, in that order.
  m.def(
      "trajectory_match_backward(Tensor grad_loss, Tensor w_student, Tensor w_target, Tensor w_start, "
      "Tensor stats, bool[3] output_mask) -> Tensor[]");
}
