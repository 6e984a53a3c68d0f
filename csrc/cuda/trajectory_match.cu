// CUDA kernels of trajectory_match (math in common/trajectory_match_math.h).
// Forward: one launch (plus one 4-byte cudaMemsetAsync for the "last block done" counter); the grid
// depends only on the length, and the last block adds the per-block sums in a fixed order.
// Backward: one elementwise launch writing the requested gradients.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <vector>

#include "../common/matching_checks.h"
#include "../common/trajectory_match_math.h"
#include "block_reduce.cuh"
#include "launch.h"

namespace medistill {
namespace {

constexpr int64_t kMaxReduceBlocks = 1024;

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kReduceThreads) trajectory_match_forward_kernel(
    const scalar_t* __restrict__ s, const scalar_t* __restrict__ t, const scalar_t* __restrict__ w0, int64_t n,
    acc_t* __restrict__ partials, double* __restrict__ stats, scalar_t* __restrict__ loss, unsigned int* counter) {
  acc_t v[2] = {acc_t(0), acc_t(0)};
  MEDISTILL_GRID_STRIDE_LOOP(i, n) {
    tm_accumulate<acc_t>(static_cast<acc_t>(s[i]), static_cast<acc_t>(t[i]), static_cast<acc_t>(w0[i]), v[0], v[1]);
  }
  block_sum(v);
  if (threadIdx.x == 0) {
    partials[blockIdx.x * 2] = v[0];
    partials[blockIdx.x * 2 + 1] = v[1];
  }
  if (!last_block_done(counter)) return;
  double tot[2] = {0.0, 0.0};
  for (int64_t b = threadIdx.x; b < gridDim.x; b += blockDim.x) {
    tot[0] += static_cast<double>(__ldcg(partials + b * 2));
    tot[1] += static_cast<double>(__ldcg(partials + b * 2 + 1));
  }
  block_sum(tot);
  if (threadIdx.x == 0) {
    stats[0] = tot[0];
    stats[1] = tot[1];
    *loss = static_cast<scalar_t>(tot[0] / tot[1]);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void trajectory_match_backward_kernel(const scalar_t* __restrict__ grad_loss,
                                                 const double* __restrict__ stats, const scalar_t* __restrict__ s,
                                                 const scalar_t* __restrict__ t, const scalar_t* __restrict__ w0,
                                                 int64_t n, scalar_t* gs, scalar_t* gt, scalar_t* g0) {
  const TMCoefs c = tm_coefs(stats[0], stats[1], static_cast<double>(grad_loss[0]));
  const acc_t cs = static_cast<acc_t>(c.cs), cz = static_cast<acc_t>(c.c0);
  MEDISTILL_GRID_STRIDE_LOOP(i, n) {
    const acc_t tt = static_cast<acc_t>(t[i]);
    const acc_t d = static_cast<acc_t>(s[i]) - tt;
    const acc_t e = static_cast<acc_t>(w0[i]) - tt;
    if (gs) gs[i] = static_cast<scalar_t>(cs * d);
    if (gt) gt[i] = static_cast<scalar_t>(cz * e - cs * d);
    if (g0) g0[i] = static_cast<scalar_t>(-cz * e);
  }
}

std::tuple<at::Tensor, at::Tensor> trajectory_match_cuda(const at::Tensor& w_student, const at::Tensor& w_target,
                                                         const at::Tensor& w_start) {
  const char* op = "medistill::trajectory_match";
  tm_check_args(op, w_student, w_target, w_start);
  c10::cuda::CUDAGuard guard(w_student.device());
  const at::Tensor s = w_student.contiguous(), t = w_target.contiguous(), w0 = w_start.contiguous();
  const int64_t n = s.numel();
  const auto opts = s.options();
  at::Tensor loss = at::empty({}, opts);
  at::Tensor stats = at::empty({2}, opts.dtype(at::kDouble));
  const int64_t blocks = std::max<int64_t>(
      1, std::min<int64_t>(kMaxReduceBlocks, (n + kReduceThreads * 8 - 1) / (kReduceThreads * 8)));
  at::Tensor counter = at::empty({1}, opts.dtype(at::kInt));
  auto stream = c10::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(cudaMemsetAsync(counter.data_ptr(), 0, sizeof(unsigned int), stream));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "trajectory_match_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor partials = at::empty({blocks * 2}, opts.dtype(c10::CppTypeToScalarType<acc_t>::value));
    trajectory_match_forward_kernel<scalar_t, acc_t><<<static_cast<unsigned int>(blocks), kReduceThreads, 0, stream>>>(
        s.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), w0.data_ptr<scalar_t>(), n, partials.data_ptr<acc_t>(),
        stats.data_ptr<double>(), loss.data_ptr<scalar_t>(), static_cast<unsigned int*>(counter.data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, stats};
}

std::vector<at::Tensor> trajectory_match_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& w_student,
                                                       const at::Tensor& w_target, const at::Tensor& w_start,
                                                       const at::Tensor& stats, std::array<bool, 3> output_mask) {
  const char* op = "medistill::trajectory_match_backward";
  tm_check_args(op, w_student, w_target, w_start);
  TORCH_CHECK(grad_loss.numel() == 1, op, ": grad_loss must hold one value, got shape ", grad_loss.sizes());
  TORCH_CHECK(stats.numel() == 2 && stats.scalar_type() == at::kDouble && stats.is_contiguous(), op,
              ": stats must be the float64 (2,) tensor returned by trajectory_match");
  MEDISTILL_CHECK_SAME_DEVICE(op, w_student, stats);
  MEDISTILL_CHECK_SAME_DEVICE(op, w_student, grad_loss);
  c10::cuda::CUDAGuard guard(w_student.device());
  const at::Tensor s = w_student.contiguous(), t = w_target.contiguous(), w0 = w_start.contiguous();
  std::vector<at::Tensor> out;
  at::Tensor gs, gt, g0;
  if (output_mask[0]) out.push_back(gs = at::empty_like(s));
  if (output_mask[1]) out.push_back(gt = at::empty_like(s));
  if (output_mask[2]) out.push_back(g0 = at::empty_like(s));
  const int64_t n = s.numel();
  if (out.empty() || n == 0) return out;
  const at::Tensor g = grad_loss.scalar_type() == s.scalar_type() ? grad_loss : grad_loss.to(s.scalar_type());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "trajectory_match_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    trajectory_match_backward_kernel<scalar_t, acc_t><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(
        g.data_ptr<scalar_t>(), stats.data_ptr<double>(), s.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
        w0.data_ptr<scalar_t>(), n, gs.defined() ? gs.data_ptr<scalar_t>() : nullptr,
        gt.defined() ? gt.data_ptr<scalar_t>() : nullptr, g0.defined() ? g0.data_ptr<scalar_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CUDA, m) {
  m.impl("trajectory_match", &medistill::trajectory_match_cuda);
  m.impl("trajectory_match_backward", &medistill::trajectory_match_backward_cuda);
}
