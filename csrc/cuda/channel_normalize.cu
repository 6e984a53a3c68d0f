// CUDA kernels of channel_normalize (math in common/channel_normalize_math.h).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/channel_normalize_math.h"
#include "../common/checks.h"
#include "launch.h"

namespace medistill {
namespace {

template <typename scalar_t>
__global__ void channel_normalize_kernel(const scalar_t* __restrict__ x, const float* __restrict__ mean,
                                         const float* __restrict__ std, scalar_t* __restrict__ out,
                                         int64_t n, int64_t channels, int64_t plane) {
  MEDISTILL_GRID_STRIDE_LOOP(i, n) {
    const long c = channel_of(i, channels, plane);
    out[i] = channel_normalize_forward_element<scalar_t, float>(x[i], mean[c], 1.0f / std[c]);
  }
}

template <typename scalar_t>
__global__ void channel_normalize_backward_kernel(const scalar_t* __restrict__ g, const float* __restrict__ std,
                                                  scalar_t* __restrict__ out, int64_t n, int64_t channels,
                                                  int64_t plane) {
  MEDISTILL_GRID_STRIDE_LOOP(i, n) {
    out[i] = channel_normalize_backward_element<scalar_t, float>(g[i], 1.0f / std[channel_of(i, channels, plane)]);
  }
}

at::Tensor channel_normalize_cuda(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& std) {
  const char* op = "medistill::channel_normalize";
  MEDISTILL_CHECK_FLOAT(op, "x", x);
  MEDISTILL_CHECK_DIM(op, "x", x, 4);
  MEDISTILL_CHECK_SAME_DEVICE(op, x, mean);
  MEDISTILL_CHECK_SAME_DEVICE(op, x, std);
  TORCH_CHECK(mean.numel() == x.size(1) && std.numel() == x.size(1), op,
              ": mean and std need one value per channel (", x.size(1), ")");
  c10::cuda::CUDAGuard guard(x.device());
  at::Tensor xc = x.contiguous();
  at::Tensor m = mean.to(at::kFloat).contiguous();
  at::Tensor s = std.to(at::kFloat).contiguous();
  at::Tensor out = at::empty_like(xc);
  const int64_t n = xc.numel();
  if (n == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "channel_normalize_cuda", [&] {
    channel_normalize_kernel<scalar_t><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(
        xc.data_ptr<scalar_t>(), m.data_ptr<float>(), s.data_ptr<float>(), out.data_ptr<scalar_t>(), n,
        xc.size(1), xc.size(2) * xc.size(3));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor channel_normalize_backward_cuda(const at::Tensor& grad_out, const at::Tensor& std) {
  const char* op = "medistill::channel_normalize_backward";
  MEDISTILL_CHECK_FLOAT(op, "grad_out", grad_out);
  MEDISTILL_CHECK_DIM(op, "grad_out", grad_out, 4);
  MEDISTILL_CHECK_SAME_DEVICE(op, grad_out, std);
  c10::cuda::CUDAGuard guard(grad_out.device());
  at::Tensor g = grad_out.contiguous();
  at::Tensor s = std.to(at::kFloat).contiguous();
  at::Tensor out = at::empty_like(g);
  const int64_t n = g.numel();
  if (n == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "channel_normalize_backward_cuda", [&] {
    channel_normalize_backward_kernel<scalar_t><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(
        g.data_ptr<scalar_t>(), s.data_ptr<float>(), out.data_ptr<scalar_t>(), n, g.size(1),
        g.size(2) * g.size(3));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CUDA, m) {
  m.impl("channel_normalize", &medistill::channel_normalize_cuda);
  m.impl("channel_normalize_backward", &medistill::channel_normalize_backward_cuda);
}
