// CPU kernels of channel_normalize (math in common/channel_normalize_math.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "../common/channel_normalize_math.h"
#include "../common/checks.h"

namespace medistill {
namespace {

void check_args(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& std) {
  const char* op = "medistill::channel_normalize";
  MEDISTILL_CHECK_FLOAT(op, "x", x);
  MEDISTILL_CHECK_DIM(op, "x", x, 4);
  MEDISTILL_CHECK_DIM(op, "mean", mean, 1);
  MEDISTILL_CHECK_DIM(op, "std", std, 1);
  TORCH_CHECK(mean.size(0) == x.size(1) && std.size(0) == x.size(1), op,
              ": mean and std need one value per channel (", x.size(1), "), got ", mean.size(0),
              " and ", std.size(0));
}

at::Tensor channel_normalize_cpu(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& std) {
  check_args(x, mean, std);
  at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty_like(xc);
  if (xc.numel() == 0) return out;
  const int64_t channels = xc.size(1);
  const int64_t planes = xc.size(0) * channels;
  const int64_t plane = xc.size(2) * xc.size(3);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "channel_normalize_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor m = mean.to(xc.scalar_type()).contiguous();
    at::Tensor s = std.to(xc.scalar_type()).contiguous();
    const scalar_t* mp = m.data_ptr<scalar_t>();
    const scalar_t* sp = s.data_ptr<scalar_t>();
    const scalar_t* in = xc.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = p % channels;
        const acc_t mu = static_cast<acc_t>(mp[c]);
        const acc_t inv = acc_t(1) / static_cast<acc_t>(sp[c]);
        const scalar_t* src = in + p * plane;
        scalar_t* dst = o + p * plane;
        for (int64_t i = 0; i < plane; ++i) dst[i] = channel_normalize_forward_element<scalar_t, acc_t>(src[i], mu, inv);
      }
    });
  });
  return out;
}

at::Tensor channel_normalize_backward_cpu(const at::Tensor& grad_out, const at::Tensor& std) {
  const char* op = "medistill::channel_normalize_backward";
  MEDISTILL_CHECK_FLOAT(op, "grad_out", grad_out);
  MEDISTILL_CHECK_DIM(op, "grad_out", grad_out, 4);
  at::Tensor g = grad_out.contiguous();
  at::Tensor out = at::empty_like(g);
  if (g.numel() == 0) return out;
  const int64_t channels = g.size(1);
  const int64_t planes = g.size(0) * channels;
  const int64_t plane = g.size(2) * g.size(3);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "channel_normalize_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor s = std.to(g.scalar_type()).contiguous();
    const scalar_t* sp = s.data_ptr<scalar_t>();
    const scalar_t* in = g.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const acc_t inv = acc_t(1) / static_cast<acc_t>(sp[p % channels]);
        const scalar_t* src = in + p * plane;
        scalar_t* dst = o + p * plane;
        for (int64_t i = 0; i < plane; ++i) dst[i] = channel_normalize_backward_element<scalar_t, acc_t>(src[i], inv);
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CPU, m) {
  m.impl("channel_normalize", &medistill::channel_normalize_cpu);
  m.impl("channel_normalize_backward", &medistill::channel_normalize_backward_cpu);
}
