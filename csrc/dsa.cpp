// Schemas of the DSA family (differentiable Siamese augmentation; math in common/dsa_math.h).
//   dsa(x, ints, floats, align_corners, compose_affine) -> augmented x
//     x: (B, C, H, W) float; ints: (P, 6) int32, floats: (P, 6) float32 per-sample params with
//     P == B, or P == 1 (a Siamese draw: every sample uses row 0). Pure: no randomness inside.
//   dsa_backward(grad_out, ints, floats, align_corners, compose_affine) -> grad wrt x
//     (the op is affine in x, so its adjoint does not need x).
//   dsa_sample(offset, span, token_bits, rows, pick_family, generator) -> (ints, floats)
//     one draw of params: (rows, 12) uniforms from `generator` mapped by the (12,) float32 column
//     constants offset/span and the (n,) int32 family bits of the strategy (dsa_math.h, sample_row);
//     returns ints (rows, 6) int32 and floats (rows, 6) float32 on offset's device.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(medistill, m) {
  m.def("dsa(Tensor x, Tensor ints, Tensor floats, bool align_corners, bool compose_affine) -> Tensor");
  m.def(
      "dsa_backward(Tensor grad_out, Tensor ints, Tensor floats, bool align_corners, bool compose_affine) -> "
      "Tensor");
  m.def(
      "dsa_sample(Tensor offset, Tensor span, Tensor token_bits, int rows, bool pick_family, Generator? generator) "
      "-> (Tensor, Tensor)");
}
