// CUDA kernels of dsa (math in common/dsa_math.h).
//
// Forward, 2 launches, no host synchronisation (CUDA-graph capturable):
//   1. dsa_sample_mean_kernel: one block per sample, mean of x over (C, H, W) (colour samples only);
//   2. dsa_forward_kernel: one thread per output element, gathers its (up to 16) taps through the
//      geometric chain and applies colour at each tap (dsa::visit_sources).
// Backward, a memset and 2 launches:
//   1. dsa_backward_scatter_kernel: one thread per output element scatters grad * weight into a
//      zeroed opmath buffer along the same taps (atomicAdd);
//   2. dsa_backward_color_kernel: one block per sample, mean of that buffer, colour adjoint, cast.
// Per-sample parameters are decoded per thread (dsa::make_plan); params with one row (a Siamese
// draw) serve every sample.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/checks.h"
#include "../common/dsa_checks.h"
#include "../common/dsa_math.h"
#include "launch.h"

namespace medistill {
namespace {

constexpr int kReduceThreads = 256;  // block size of the per-sample kernels (a multiple of 32)

// Sum over the block (blockDim.x == kReduceThreads); every thread gets the total.
template <typename acc_t>
__device__ acc_t block_sum(acc_t v) {
  __shared__ acc_t warp_sums[kReduceThreads / 32];
  __shared__ acc_t total;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kReduceThreads / 32 ? warp_sums[lane] : acc_t(0);
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) total = v;
  }
  __syncthreads();
  const acc_t result = total;
  __syncthreads();  // the shared slots may be reused by the next call
  return result;
}

// Per-sample params rows (one row serves every sample of a Siamese draw).
struct ParamsView {
  const int32_t* ints;
  const float* floats;
  int64_t int_stride, float_stride;
  bool siamese;
  __device__ __forceinline__ const int32_t* irow(int64_t b) const { return ints + (siamese ? 0 : b) * int_stride; }
  __device__ __forceinline__ const float* frow(int64_t b) const { return floats + (siamese ? 0 : b) * float_stride; }
};

ParamsView params_view(const at::Tensor& ip, const at::Tensor& fp) {
  return ParamsView{ip.data_ptr<int32_t>(), fp.data_ptr<float>(), ip.stride(0), fp.stride(0), ip.size(0) == 1};
}

template <typename scalar_t, typename acc_t>
__global__ void dsa_sample_mean_kernel(const scalar_t* __restrict__ x, ParamsView params, int64_t batch,
                                       int64_t numel, acc_t* __restrict__ means) {
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const int fam = params.irow(b)[dsa::kFamilies];
    if (!(fam & dsa::kColor)) {  // uniform over the block
      if (threadIdx.x == 0) means[b] = acc_t(0);
      continue;
    }
    const scalar_t* xb = x + b * numel;
    acc_t s = 0;
    for (int64_t k = threadIdx.x; k < numel; k += blockDim.x) s += static_cast<acc_t>(xb[k]);
    s = block_sum(s);
    if (threadIdx.x == 0) means[b] = s / static_cast<acc_t>(numel);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void dsa_forward_kernel(const scalar_t* __restrict__ x, ParamsView params, const acc_t* __restrict__ means,
                                   scalar_t* __restrict__ out, int64_t n, int64_t C, int64_t H, int64_t W,
                                   bool align_corners, bool compose) {
  const int64_t HW = H * W, CHW = C * HW;
  MEDISTILL_GRID_STRIDE_LOOP(idx, n) {
    const int64_t j = idx % W, i = (idx / W) % H, c = (idx / HW) % C, b = idx / CHW;
    const auto p = dsa::make_plan<acc_t>(params.irow(b), params.frow(b), H, W, align_corners, compose);
    const scalar_t* xb = x + b * CHW;
    const acc_t mean = means[b];
    acc_t acc = 0;
    dsa::visit_sources(p, i, j, H, W, [&](int64_t s, acc_t w) {
      acc_t v = static_cast<acc_t>(xb[c * HW + s]);
      if (p.color) {
        acc_t mc = 0;
        for (int64_t k = 0; k < C; ++k) mc += static_cast<acc_t>(xb[k * HW + s]);
        v = dsa::color_forward(v, mc / static_cast<acc_t>(C), mean, p);
      }
      acc += w * v;
    });
    out[idx] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void dsa_backward_scatter_kernel(const scalar_t* __restrict__ grad, ParamsView params,
                                            acc_t* __restrict__ gz,
                                            int64_t n, int64_t C, int64_t H, int64_t W, bool align_corners,
                                            bool compose) {
  const int64_t HW = H * W, CHW = C * HW;
  MEDISTILL_GRID_STRIDE_LOOP(idx, n) {
    const acc_t g = static_cast<acc_t>(grad[idx]);
    if (g == acc_t(0)) continue;
    const int64_t j = idx % W, i = (idx / W) % H, c = (idx / HW) % C, b = idx / CHW;
    const auto p = dsa::make_plan<acc_t>(params.irow(b), params.frow(b), H, W, align_corners, compose);
    acc_t* target = gz + b * CHW + c * HW;
    dsa::visit_sources(p, i, j, H, W, [&](int64_t s, acc_t w) { atomicAdd(target + s, w * g); });
  }
}

template <typename scalar_t, typename acc_t>
__global__ void dsa_backward_color_kernel(const acc_t* __restrict__ gz, ParamsView params, scalar_t* __restrict__ gx,
                                          int64_t batch, int64_t C, int64_t H, int64_t W) {
  const int64_t HW = H * W, CHW = C * HW;
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const acc_t* gb = gz + b * CHW;
    scalar_t* ob = gx + b * CHW;
    if (!(params.irow(b)[dsa::kFamilies] & dsa::kColor)) {  // uniform over the block
      for (int64_t k = threadIdx.x; k < CHW; k += blockDim.x) ob[k] = static_cast<scalar_t>(gb[k]);
      continue;
    }
    const auto p = dsa::make_plan<acc_t>(params.irow(b), params.frow(b), H, W, false, false);
    acc_t s = 0;
    for (int64_t k = threadIdx.x; k < CHW; k += blockDim.x) s += gb[k];
    const acc_t mean = block_sum(s) / static_cast<acc_t>(CHW);
    for (int64_t k = threadIdx.x; k < CHW; k += blockDim.x) {
      const int64_t pix = k % HW;
      acc_t mc = 0;
      for (int64_t cc = 0; cc < C; ++cc) mc += gb[cc * HW + pix];
      ob[k] = static_cast<scalar_t>(dsa::color_backward(gb[k], mc / static_cast<acc_t>(C), mean, p));
    }
  }
}

unsigned int per_sample_grid(int64_t batch) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(batch, kMaxBlocks)));
}

at::Tensor dsa_cuda(const at::Tensor& x, const at::Tensor& ints, const at::Tensor& floats, bool align_corners,
                    bool compose_affine) {
  const char* op = "medistill::dsa";
  dsa_check_args(op, "x", x, ints, floats);
  c10::cuda::CUDAGuard guard(x.device());
  at::Tensor xc = x.contiguous();
  const at::Tensor ip = dsa_params_rows(ints, at::kInt);
  const at::Tensor fp = dsa_params_rows(floats, at::kFloat);
  at::Tensor out = at::empty(xc.sizes(), xc.options());
  const int64_t n = xc.numel();
  if (n == 0) return out;
  const int64_t B = xc.size(0), C = xc.size(1), H = xc.size(2), W = xc.size(3);
  const ParamsView params = params_view(ip, fp);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "dsa_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor means = at::empty({B}, xc.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    dsa_sample_mean_kernel<scalar_t, acc_t><<<per_sample_grid(B), kReduceThreads, 0, stream>>>(
        xc.data_ptr<scalar_t>(), params, B, C * H * W, means.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    dsa_forward_kernel<scalar_t, acc_t><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(
        xc.data_ptr<scalar_t>(), params, means.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), n, C, H, W,
        align_corners, compose_affine);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor dsa_backward_cuda(const at::Tensor& grad_out, const at::Tensor& ints, const at::Tensor& floats,
                             bool align_corners, bool compose_affine) {
  const char* op = "medistill::dsa_backward";
  dsa_check_args(op, "grad_out", grad_out, ints, floats);
  c10::cuda::CUDAGuard guard(grad_out.device());
  at::Tensor g = grad_out.contiguous();
  const at::Tensor ip = dsa_params_rows(ints, at::kInt);
  const at::Tensor fp = dsa_params_rows(floats, at::kFloat);
  at::Tensor gx = at::empty(g.sizes(), g.options());
  const int64_t n = g.numel();
  if (n == 0) return gx;
  const int64_t B = g.size(0), C = g.size(1), H = g.size(2), W = g.size(3);
  const ParamsView params = params_view(ip, fp);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "dsa_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor gz = at::empty(g.sizes(), g.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    C10_CUDA_CHECK(cudaMemsetAsync(gz.data_ptr<acc_t>(), 0, gz.nbytes(), stream));
    dsa_backward_scatter_kernel<scalar_t, acc_t><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(
        g.data_ptr<scalar_t>(), params, gz.data_ptr<acc_t>(), n, C, H, W, align_corners, compose_affine);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    dsa_backward_color_kernel<scalar_t, acc_t><<<per_sample_grid(B), kReduceThreads, 0, stream>>>(
        gz.data_ptr<acc_t>(), params, gx.data_ptr<scalar_t>(), B, C, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gx;
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CUDA, m) {
  m.impl("dsa", &medistill::dsa_cuda);
  m.impl("dsa_backward", &medistill::dsa_backward_cuda);
}
