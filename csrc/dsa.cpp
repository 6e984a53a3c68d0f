// Schemas of the DSA family (differentiable Siamese augmentation; math in common/dsa_math.h).
//   dsa(x, ints, floats, align_corners, compose_affine) -> augmented x
//     x: (B, C, H, W) float; ints: (P, 6) int32, floats: (P, 6) float32 per-sample params with
//     P == B, or P == 1 (a Siamese draw: every sample uses row 0). Pure: no randomness inside.
//   dsa_backward(grad_out, ints, floats, align_corners, compose_affine) -> grad wrt x
//     (the op is affine in x, so its adjoint does not need x).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(medistill, m) {
  m.def("dsa(Tensor x, Tensor ints, Tensor floats, bool align_corners, bool compose_affine) -> Tensor");
  m.def(
      "dsa_backward(Tensor grad_out, Tensor ints, Tensor floats, bool align_corners, bool compose_affine) -> "
      "Tensor");
}
