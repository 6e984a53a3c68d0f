// CPU kernels of norm_relu_pool (math in common/norm_relu_pool_math.h).
// Parallel over (b, c) planes; each plane is handled while it sits in cache: forward = a two-pass
// mean/variance in double, then one fused normalise + ReLU + pool pass; backward = one pass that
// expands the pooled gradient through the ReLU mask (recomputed from x) and sums Σgy, Σgy·xhat (per
// row in the input precision, rows in double), then one pass applying the instance-norm backward. grad_weight/grad_bias are the per-plane
// sums reduced over the batch in a fixed order afterwards (no races, independent of thread count).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../common/norm_relu_pool_checks.h"
#include "../common/norm_relu_pool_math.h"
#include "simd/dispatch.h"

namespace medistill {
namespace {

constexpr int64_t kTaskElems = 16384;  // input elements per parallel_for task, roughly

int64_t grain_for(int64_t plane) { return std::max<int64_t>(1, kTaskElems / std::max<int64_t>(1, plane)); }

void check_cpu_dtype(const char* op, const at::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": the CPU kernel takes float32 or float64 x, got ", x.scalar_type());
}

// One (H, W) plane forward. buf: W scratch values. Writes out (H/2, W/2), *mean_out, *rstd_out.
template <typename scalar_t>
MEDISTILL_ALWAYS_INLINE void forward_plane_impl(const scalar_t* x, int64_t h, int64_t w, scalar_t weight,
                                                scalar_t bias, double eps, scalar_t* out, scalar_t* mean_out,
                                                scalar_t* rstd_out, scalar_t* buf) {
  const int64_t n = h * w;
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]);
  const double mean = s / static_cast<double>(n);
  double q = 0.0;
#pragma omp simd reduction(+ : q)
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - mean;
    q += d * d;
  }
  const scalar_t mean_s = static_cast<scalar_t>(mean);
  const scalar_t rstd_s = static_cast<scalar_t>(nrp_rstd<double>(q / static_cast<double>(n), eps));
  *mean_out = mean_s;
  *rstd_out = rstd_s;
  const NRPAffine<scalar_t> a = nrp_affine<scalar_t>(mean_s, rstd_s, weight, bias);
  const int64_t ho = h / 2, wo = w / 2, we = 2 * wo;
  for (int64_t oh = 0; oh < ho; ++oh) {
    const scalar_t* r0 = x + 2 * oh * w;
    const scalar_t* r1 = r0 + w;
#pragma omp simd
    for (int64_t j = 0; j < we; ++j) buf[j] = nrp_activation<scalar_t>(r0[j], a) + nrp_activation<scalar_t>(r1[j], a);
    scalar_t* o = out + oh * wo;
    for (int64_t ow = 0; ow < wo; ++ow) o[ow] = (buf[2 * ow] + buf[2 * ow + 1]) * scalar_t(0.25);
  }
}
MEDISTILL_X86_DISPATCH(forward_plane, forward_plane_impl)

// One (H, W) plane backward: writes grad_x (H, W) and sums[0] = Σgy, sums[1] = Σgy·xhat. buf: W values.
template <typename scalar_t>
MEDISTILL_ALWAYS_INLINE void backward_plane_impl(const scalar_t* go, const scalar_t* x, int64_t h, int64_t w,
                                                 scalar_t mean, scalar_t rstd, scalar_t weight, scalar_t bias,
                                                 scalar_t* gx, double* sums, scalar_t* buf) {
  const NRPAffine<scalar_t> a = nrp_affine<scalar_t>(mean, rstd, weight, bias);
  const int64_t n = h * w, ho = h / 2, wo = w / 2, we = 2 * wo;
  double s1 = 0.0, s2 = 0.0;
  for (int64_t r = 0; r < h; ++r) {
    const scalar_t* xr = x + r * w;
    scalar_t* gr = gx + r * w;
    if (r >= 2 * ho) {  // a dropped odd last row
      std::fill(gr, gr + w, scalar_t(0));
      continue;
    }
    const scalar_t* gor = go + (r / 2) * wo;
    for (int64_t ow = 0; ow < wo; ++ow) buf[2 * ow] = buf[2 * ow + 1] = gor[ow];
    scalar_t r1 = 0, r2 = 0;  // one row in the input precision (vectorised, branch-free), rows in double
#pragma omp simd reduction(+ : r1, r2)
    for (int64_t j = 0; j < we; ++j) {
      const scalar_t gy = nrp_grad_y<scalar_t>(xr[j], a, buf[j], true);
      gr[j] = gy;
      r1 += gy;
      r2 += gy * ((xr[j] - mean) * rstd);
    }
    s1 += static_cast<double>(r1);
    s2 += static_cast<double>(r2);
    for (int64_t j = we; j < w; ++j) gr[j] = scalar_t(0);  // a dropped odd last column
  }
  sums[0] = s1;
  sums[1] = s2;
  const scalar_t k = rstd * weight;
  const scalar_t m1 = static_cast<scalar_t>(s1 / static_cast<double>(n));
  const scalar_t m2 = static_cast<scalar_t>(s2 / static_cast<double>(n));
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) gx[i] = nrp_grad_x<scalar_t>(gx[i], (x[i] - mean) * rstd, k, m1, m2);
}
MEDISTILL_X86_DISPATCH(backward_plane, backward_plane_impl)

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_relu_pool_cpu(const at::Tensor& x, const at::Tensor& weight,
                                                                  const at::Tensor& bias, double eps) {
  const char* op = "medistill::norm_relu_pool";
  nrp_check_input(op, x, weight, bias);
  check_cpu_dtype(op, x);
  const int64_t nb = x.size(0), nc = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty({nb, nc, h / 2, w / 2}, xc.options());
  at::Tensor mean = at::empty({nb, nc}, xc.options());
  at::Tensor rstd = at::empty({nb, nc}, xc.options());
  const int64_t planes = nb * nc;
  if (planes == 0) return {out, mean, rstd};
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "norm_relu_pool_cpu", [&] {
    at::Tensor wt = weight.to(xc.scalar_type()).contiguous();
    at::Tensor bs = bias.to(xc.scalar_type()).contiguous();
    const scalar_t* wp = wt.data_ptr<scalar_t>();
    const scalar_t* bp = bs.data_ptr<scalar_t>();
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    scalar_t* op_ = out.data_ptr<scalar_t>();
    scalar_t* mp = mean.data_ptr<scalar_t>();
    scalar_t* rp = rstd.data_ptr<scalar_t>();
    const int64_t plane = h * w, oplane = (h / 2) * (w / 2);
    at::parallel_for(0, planes, grain_for(plane), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> buf(static_cast<size_t>(w));
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = p % nc;
        forward_plane<scalar_t>(xp + p * plane, h, w, wp[c], bp[c], eps, op_ + p * oplane, mp + p, rp + p,
                                buf.data());
      }
    });
  });
  return {out, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_relu_pool_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const at::Tensor& mean, const at::Tensor& rstd) {
  const char* op = "medistill::norm_relu_pool_backward";
  nrp_check_backward(op, grad_out, x, weight, bias, mean, rstd);
  check_cpu_dtype(op, x);
  const int64_t nb = x.size(0), nc = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor xc = x.contiguous();
  at::Tensor grad_x = at::empty({nb, nc, h, w}, xc.options());
  const int64_t planes = nb * nc;
  if (planes == 0) return {grad_x, at::zeros_like(weight), at::zeros_like(bias)};
  at::Tensor sums = at::empty({planes, 2}, xc.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "norm_relu_pool_backward_cpu", [&] {
    at::Tensor g = grad_out.to(xc.scalar_type()).contiguous();
    at::Tensor wt = weight.to(xc.scalar_type()).contiguous();
    at::Tensor bs = bias.to(xc.scalar_type()).contiguous();
    at::Tensor m = mean.to(xc.scalar_type()).contiguous();
    at::Tensor r = rstd.to(xc.scalar_type()).contiguous();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    const scalar_t* wp = wt.data_ptr<scalar_t>();
    const scalar_t* bp = bs.data_ptr<scalar_t>();
    const scalar_t* mp = m.data_ptr<scalar_t>();
    const scalar_t* rp = r.data_ptr<scalar_t>();
    scalar_t* gxp = grad_x.data_ptr<scalar_t>();
    double* sp = sums.data_ptr<double>();
    const int64_t plane = h * w, oplane = (h / 2) * (w / 2);
    at::parallel_for(0, planes, grain_for(plane), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> buf(static_cast<size_t>(w));
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = p % nc;
        backward_plane<scalar_t>(gp + p * oplane, xp + p * plane, h, w, mp[p], rp[p], wp[c], bp[c],
                                 gxp + p * plane, sp + 2 * p, buf.data());
      }
    });
  });
  // grad_bias[c] = Σ_b Σgy, grad_weight[c] = Σ_b Σgy·xhat, summed over b in order.
  std::vector<double> gw(static_cast<size_t>(nc), 0.0), gb(static_cast<size_t>(nc), 0.0);
  const double* sp = sums.data_ptr<double>();
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t c = 0; c < nc; ++c) {
      gb[c] += sp[2 * (b * nc + c)];
      gw[c] += sp[2 * (b * nc + c) + 1];
    }
  }
  at::Tensor grad_weight = at::empty({nc}, weight.options().dtype(at::kDouble));
  at::Tensor grad_bias = at::empty({nc}, bias.options().dtype(at::kDouble));
  std::copy(gw.begin(), gw.end(), grad_weight.data_ptr<double>());
  std::copy(gb.begin(), gb.end(), grad_bias.data_ptr<double>());
  return {grad_x, grad_weight.to(weight.scalar_type()), grad_bias.to(bias.scalar_type())};
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CPU, m) {
  m.impl("norm_relu_pool", &medistill::norm_relu_pool_cpu);
  m.impl("norm_relu_pool_backward", &medistill::norm_relu_pool_backward_cpu);
}
