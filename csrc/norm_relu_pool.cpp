// Schemas of the norm_relu_pool family: one ConvNet block after its convolution,
//   out = avg_pool2d(relu(group_norm(x, C, weight, bias, eps)), 2)   (instance norm, affine; floor mode)
// x: (B, C, H, W), H, W >= 2; weight, bias: (C,); out: (B, C, H/2, W/2); mean, rstd: (B, C) per
// plane, float32 (float64 for float64 x), saved for the backward, which recomputes the ReLU mask.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(medistill, m) {
  m.def("norm_relu_pool(Tensor x, Tensor weight, Tensor bias, float eps) -> (Tensor, Tensor, Tensor)");
  m.def(
      "norm_relu_pool_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor bias, Tensor mean, Tensor rstd)"
      " -> (Tensor, Tensor, Tensor)");
}
