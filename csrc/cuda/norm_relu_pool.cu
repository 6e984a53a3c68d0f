// CUDA kernels of norm_relu_pool (math in common/norm_relu_pool_math.h).
// One block per (b, c) plane (a block-stride loop over planes when there are more than the grid
// cap), any plane size (thread-stride loops inside the plane). Statistics: two-pass mean / biased
// variance accumulated in float (double for float64) with the deterministic block_sum. The backward
// recomputes the ReLU mask and the pooled gradient from (x, grad_out) in both of its passes instead
// of storing them; grad_weight/grad_bias are summed over the batch in a fixed order by a second
// small kernel from per-plane partial sums (no atomics, deterministic).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../common/norm_relu_pool_checks.h"
#include "../common/norm_relu_pool_math.h"
#include "block_reduce.cuh"
#include "launch.h"

namespace medistill {
namespace {

// Sum of one value over the block, returned to every thread.
template <typename acc_t, int N>
__device__ __forceinline__ void block_sum_all(acc_t (&v)[N]) {
  __shared__ acc_t result[N];
  block_sum<acc_t, N>(v);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int j = 0; j < N; ++j) result[j] = v[j];
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < N; ++j) v[j] = result[j];
  __syncthreads();  // `result` may be rewritten by the next call
}

template <typename scalar_t, typename acc_t>
__global__ void norm_relu_pool_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ weight,
                                      const acc_t* __restrict__ bias, scalar_t* __restrict__ out,
                                      acc_t* __restrict__ mean_out, acc_t* __restrict__ rstd_out, int64_t planes,
                                      int64_t channels, int64_t h, int64_t w, acc_t eps) {
  const int64_t n = h * w, ho = h / 2, wo = w / 2;
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const scalar_t* xp = x + p * n;
    acc_t s[1] = {acc_t(0)};
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s[0] += static_cast<acc_t>(xp[i]);
    block_sum_all<acc_t, 1>(s);
    const acc_t mean = s[0] / static_cast<acc_t>(n);
    acc_t q[1] = {acc_t(0)};
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const acc_t d = static_cast<acc_t>(xp[i]) - mean;
      q[0] += d * d;
    }
    block_sum_all<acc_t, 1>(q);
    const acc_t rstd = nrp_rstd<acc_t>(q[0] / static_cast<acc_t>(n), eps);
    if (threadIdx.x == 0) {
      mean_out[p] = mean;
      rstd_out[p] = rstd;
    }
    const int64_t c = p % channels;
    const NRPAffine<acc_t> a = nrp_affine<acc_t>(mean, rstd, weight[c], bias[c]);
    scalar_t* op = out + p * ho * wo;
    for (int64_t o = threadIdx.x; o < ho * wo; o += blockDim.x) {
      const int64_t oh = o / wo, ow = o % wo;
      const scalar_t* r0 = xp + 2 * oh * w + 2 * ow;
      const scalar_t* r1 = r0 + w;
      const acc_t left = nrp_activation<acc_t>(static_cast<acc_t>(r0[0]), a) +
                         nrp_activation<acc_t>(static_cast<acc_t>(r1[0]), a);
      const acc_t right = nrp_activation<acc_t>(static_cast<acc_t>(r0[1]), a) +
                          nrp_activation<acc_t>(static_cast<acc_t>(r1[1]), a);
      op[o] = static_cast<scalar_t>((left + right) * acc_t(0.25));
    }
  }
}

// gy = d loss / d y of element i of a plane (0 where the ReLU or the pool dropped it).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t plane_grad_y(const scalar_t* go, acc_t xv, NRPAffine<acc_t> a, int64_t i,
                                              int64_t w, int64_t ho, int64_t wo) {
  const int64_t r = i / w, j = i % w;
  const bool pooled = r < 2 * ho && j < 2 * wo;
  const acc_t gp = pooled ? static_cast<acc_t>(go[(r / 2) * wo + j / 2]) : acc_t(0);
  return nrp_grad_y<acc_t>(xv, a, gp, pooled);
}

template <typename scalar_t, typename acc_t>
__global__ void norm_relu_pool_backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ x,
                                               const acc_t* __restrict__ weight, const acc_t* __restrict__ bias,
                                               const acc_t* __restrict__ mean, const acc_t* __restrict__ rstd,
                                               scalar_t* __restrict__ grad_x, acc_t* __restrict__ sums,
                                               int64_t planes, int64_t channels, int64_t h, int64_t w) {
  const int64_t n = h * w, ho = h / 2, wo = w / 2;
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const scalar_t* xp = x + p * n;
    const scalar_t* gop = grad_out + p * ho * wo;
    const int64_t c = p % channels;
    const acc_t mu = mean[p], rs = rstd[p];
    const NRPAffine<acc_t> a = nrp_affine<acc_t>(mu, rs, weight[c], bias[c]);
    acc_t s[2] = {acc_t(0), acc_t(0)};
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const acc_t xv = static_cast<acc_t>(xp[i]);
      const acc_t gy = plane_grad_y<scalar_t, acc_t>(gop, xv, a, i, w, ho, wo);
      s[0] += gy;
      s[1] += gy * ((xv - mu) * rs);
    }
    block_sum_all<acc_t, 2>(s);
    if (threadIdx.x == 0) {
      sums[2 * p] = s[0];
      sums[2 * p + 1] = s[1];
    }
    const acc_t k = rs * weight[c];
    const acc_t m1 = s[0] / static_cast<acc_t>(n), m2 = s[1] / static_cast<acc_t>(n);
    scalar_t* gxp = grad_x + p * n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const acc_t xv = static_cast<acc_t>(xp[i]);
      const acc_t gy = plane_grad_y<scalar_t, acc_t>(gop, xv, a, i, w, ho, wo);
      gxp[i] = static_cast<scalar_t>(nrp_grad_x<acc_t>(gy, (xv - mu) * rs, k, m1, m2));
    }
  }
}

// grad_bias[c] = Σ_b sums[b, c, 0], grad_weight[c] = Σ_b sums[b, c, 1], over b in order.
template <typename acc_t>
__global__ void norm_relu_pool_param_grad_kernel(const acc_t* __restrict__ sums, acc_t* __restrict__ grad_weight,
                                                 acc_t* __restrict__ grad_bias, int64_t batch, int64_t channels) {
  MEDISTILL_GRID_STRIDE_LOOP(c, channels) {
    acc_t gb = acc_t(0), gw = acc_t(0);
    for (int64_t b = 0; b < batch; ++b) {
      gb += sums[2 * (b * channels + c)];
      gw += sums[2 * (b * channels + c) + 1];
    }
    grad_weight[c] = gw;
    grad_bias[c] = gb;
  }
}

unsigned int plane_grid(int64_t planes) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(planes, kMaxBlocks)));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_relu_pool_cuda(const at::Tensor& x, const at::Tensor& weight,
                                                                   const at::Tensor& bias, double eps) {
  const char* op = "medistill::norm_relu_pool";
  nrp_check_input(op, x, weight, bias);
  c10::cuda::CUDAGuard guard(x.device());
  const int64_t nb = x.size(0), nc = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor xc = x.contiguous();
  const auto stat_dtype = nrp_stat_dtype(xc);
  at::Tensor out = at::empty({nb, nc, h / 2, w / 2}, xc.options());
  at::Tensor mean = at::empty({nb, nc}, xc.options().dtype(stat_dtype));
  at::Tensor rstd = at::empty({nb, nc}, xc.options().dtype(stat_dtype));
  const int64_t planes = nb * nc;
  if (planes == 0) return {out, mean, rstd};
  at::Tensor wt = weight.to(stat_dtype).contiguous();
  at::Tensor bs = bias.to(stat_dtype).contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "norm_relu_pool_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    norm_relu_pool_kernel<scalar_t, acc_t><<<plane_grid(planes), kReduceThreads, 0, stream>>>(
        xc.data_ptr<scalar_t>(), wt.data_ptr<acc_t>(), bs.data_ptr<acc_t>(), out.data_ptr<scalar_t>(),
        mean.data_ptr<acc_t>(), rstd.data_ptr<acc_t>(), planes, nc, h, w, static_cast<acc_t>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_relu_pool_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const at::Tensor& mean, const at::Tensor& rstd) {
  const char* op = "medistill::norm_relu_pool_backward";
  nrp_check_backward(op, grad_out, x, weight, bias, mean, rstd);
  c10::cuda::CUDAGuard guard(x.device());
  const int64_t nb = x.size(0), nc = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor xc = x.contiguous();
  at::Tensor grad_x = at::empty({nb, nc, h, w}, xc.options());
  const int64_t planes = nb * nc;
  if (planes == 0) return {grad_x, at::zeros_like(weight), at::zeros_like(bias)};
  const auto stat_dtype = nrp_stat_dtype(xc);
  at::Tensor g = grad_out.to(xc.scalar_type()).contiguous();
  at::Tensor wt = weight.to(stat_dtype).contiguous();
  at::Tensor bs = bias.to(stat_dtype).contiguous();
  at::Tensor m = mean.to(stat_dtype).contiguous();
  at::Tensor r = rstd.to(stat_dtype).contiguous();
  at::Tensor sums = at::empty({planes, 2}, xc.options().dtype(stat_dtype));
  at::Tensor grad_weight = at::empty({nc}, xc.options().dtype(stat_dtype));
  at::Tensor grad_bias = at::empty({nc}, xc.options().dtype(stat_dtype));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "norm_relu_pool_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    norm_relu_pool_backward_kernel<scalar_t, acc_t><<<plane_grid(planes), kReduceThreads, 0, stream>>>(
        g.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), wt.data_ptr<acc_t>(), bs.data_ptr<acc_t>(),
        m.data_ptr<acc_t>(), r.data_ptr<acc_t>(), grad_x.data_ptr<scalar_t>(), sums.data_ptr<acc_t>(), planes, nc,
        h, w);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    norm_relu_pool_param_grad_kernel<acc_t><<<grid_for(nc), kThreadsPerBlock, 0, stream>>>(
        sums.data_ptr<acc_t>(), grad_weight.data_ptr<acc_t>(), grad_bias.data_ptr<acc_t>(), nb, nc);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_x, grad_weight.to(weight.scalar_type()), grad_bias.to(bias.scalar_type())};
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CUDA, m) {
  m.impl("norm_relu_pool", &medistill::norm_relu_pool_cuda);
  m.impl("norm_relu_pool_backward", &medistill::norm_relu_pool_backward_cuda);
}
