// Argument checks of norm_relu_pool and its backward, shared by the CPU and CUDA kernels; every
// failure names the op and the problem.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "checks.h"

namespace medistill {

inline void nrp_check_input(const char* op, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  MEDISTILL_CHECK_FLOAT(op, "x", x);
  MEDISTILL_CHECK_DIM(op, "x", x, 4);
  MEDISTILL_CHECK_FLOAT(op, "weight", weight);
  MEDISTILL_CHECK_FLOAT(op, "bias", bias);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(1), op, ": weight must have shape (C,) = (", x.size(1),
              ",), got ", weight.sizes());
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == x.size(1), op, ": bias must have shape (C,) = (", x.size(1),
              ",), got ", bias.sizes());
  TORCH_CHECK(x.size(2) >= 2 && x.size(3) >= 2, op, ": H and W must be at least 2 for a 2x2 pool, got ",
              x.sizes());
  MEDISTILL_CHECK_SAME_DEVICE(op, x, weight);
  MEDISTILL_CHECK_SAME_DEVICE(op, x, bias);
}

inline void nrp_check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                               const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& mean,
                               const at::Tensor& rstd) {
  nrp_check_input(op, x, weight, bias);
  MEDISTILL_CHECK_FLOAT(op, "grad_out", grad_out);
  const int64_t b = x.size(0), c = x.size(1);
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == b && grad_out.size(1) == c &&
                  grad_out.size(2) == x.size(2) / 2 && grad_out.size(3) == x.size(3) / 2,
              op, ": grad_out must have shape (B, C, H/2, W/2) for x of shape ", x.sizes(), ", got ",
              grad_out.sizes());
  TORCH_CHECK(mean.numel() == b * c && rstd.numel() == b * c, op,
              ": mean and rstd need one value per (b, c) plane (", b * c, "), got ", mean.numel(), " and ",
              rstd.numel());
  MEDISTILL_CHECK_SAME_DEVICE(op, x, grad_out);
  MEDISTILL_CHECK_SAME_DEVICE(op, x, mean);
  MEDISTILL_CHECK_SAME_DEVICE(op, x, rstd);
}

// dtype of the saved per-plane statistics: float64 for float64 input, float32 otherwise.
inline at::ScalarType nrp_stat_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace medistill
