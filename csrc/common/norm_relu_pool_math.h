// Per-element math of norm_relu_pool (instance norm → ReLU → 2×2 average pool), shared by the CPU
// and CUDA kernels. Per (b, c) plane the normalisation is folded into one affine map
//   y = max(0, x * scale + shift),  scale = rstd * weight[c],  shift = bias[c] - mean * scale,
// as ATen's GroupNorm kernels do; the backward recomputes the ReLU mask with the same expression
// from the saved (mean, rstd), so forward and backward agree on every masked element.
#pragma once
#include "macros.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace medistill {

template <typename acc_t>
struct NRPAffine {
  acc_t scale;
  acc_t shift;
};

template <typename acc_t>
HOST_DEVICE_INLINE NRPAffine<acc_t> nrp_affine(acc_t mean, acc_t rstd, acc_t weight, acc_t bias) {
  const acc_t scale = rstd * weight;
  return NRPAffine<acc_t>{scale, bias - mean * scale};
}

// relu(x * scale + shift); NaN stays NaN, as torch.relu.
template <typename acc_t>
HOST_DEVICE_INLINE acc_t nrp_activation(acc_t x, NRPAffine<acc_t> a) {
  const acc_t y = x * a.scale + a.shift;
  return y < acc_t(0) ? acc_t(0) : y;
}

// x > 0 as a quiet comparison (no FP exception on NaN, so GCC may vectorise it under its default
// -ftrapping-math); false for NaN, like `>`.
template <typename acc_t>
HOST_DEVICE_INLINE bool nrp_positive(acc_t x) {
#if defined(__CUDA_ARCH__)
  return x > acc_t(0);
#else
  return __builtin_isgreater(x, acc_t(0));
#endif
}

// keep ? v : 0, on the host as a bit mask: GCC turns this select into vector code where a ternary
// would stay a branch (about 8x slower on random ReLU masks).
template <typename acc_t>
HOST_DEVICE_INLINE acc_t nrp_keep_if(acc_t v, bool keep) {
#if defined(__CUDA_ARCH__)
  return keep ? v : acc_t(0);
#else
  using bits_t = std::conditional_t<sizeof(acc_t) == 4, uint32_t, uint64_t>;
  static_assert(sizeof(bits_t) == sizeof(acc_t), "nrp_keep_if: float or double");
  bits_t b;
  std::memcpy(&b, &v, sizeof b);
  b &= bits_t(0) - static_cast<bits_t>(keep);
  acc_t out;
  std::memcpy(&out, &b, sizeof out);
  return out;
#endif
}

// d out / d y for one input element: a quarter of the pooled gradient where the ReLU passed,
// 0 where it did not (ReLU's gradient at 0 is 0, as torch's) or where the pool dropped the element.
template <typename acc_t>
HOST_DEVICE_INLINE acc_t nrp_grad_y(acc_t x, NRPAffine<acc_t> a, acc_t grad_pooled, bool pooled) {
  return nrp_keep_if<acc_t>(acc_t(0.25) * grad_pooled, pooled & nrp_positive<acc_t>(x * a.scale + a.shift));
}

// rstd from the biased variance, as group_norm: 1 / sqrt(var + eps) (a rounding-negative var counts as 0;
// NaN stays NaN).
template <typename acc_t>
HOST_DEVICE_INLINE acc_t nrp_rstd(acc_t var, acc_t eps);

template <>
HOST_DEVICE_INLINE float nrp_rstd<float>(float var, float eps) {
#if defined(__CUDA_ARCH__)
  return rsqrtf((var < 0.f ? 0.f : var) + eps);
#else
  return 1.f / __builtin_sqrtf((var < 0.f ? 0.f : var) + eps);
#endif
}

template <>
HOST_DEVICE_INLINE double nrp_rstd<double>(double var, double eps) {
#if defined(__CUDA_ARCH__)
  return rsqrt((var < 0.0 ? 0.0 : var) + eps);
#else
  return 1.0 / __builtin_sqrt((var < 0.0 ? 0.0 : var) + eps);
#endif
}

// Instance-norm backward for one element of a plane of n elements, given the plane sums
// sum_gy = Σ gy and sum_gy_xhat = Σ gy·xhat (gy = d loss / d y, xhat = (x - mean)·rstd):
//   grad_x = rstd · weight · (gy - sum_gy / n - xhat · sum_gy_xhat / n).
template <typename acc_t>
HOST_DEVICE_INLINE acc_t nrp_grad_x(acc_t gy, acc_t xhat, acc_t k, acc_t mean_gy, acc_t mean_gy_xhat) {
  return k * (gy - mean_gy - xhat * mean_gy_xhat);
}

}  // namespace medistill
