// CUDA kernels of distribution_match (math in common/distribution_match_math.h).
//
// Forward, one kernel launch (plus one 4-byte cudaMemsetAsync for the "last block done" counter):
// block (tile, k) owns class k and a tile of columns; it walks the labels (staged in shared memory)
// and adds the rows of class k, so each embedding row is read exactly once overall, in row order
// (deterministic, no atomics on data). It writes the class difference of its columns and the sum
// of their squares; the last block adds those partial sums in a fixed order. Out-of-range labels
// trip a device-side assert (checking them on the host would need a device sync).
// Backward, one launch per side: d loss / d emb[i, d] = scale(y_i) * class_diff[y_i, d].
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../common/distribution_match_math.h"
#include "../common/matching_checks.h"
#include "block_reduce.cuh"
#include "launch.h"

namespace medistill {
namespace {

// Sum of the rows of class k in columns d (one per thread) and their count.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void class_column_sum(const scalar_t* __restrict__ x, const int64_t* __restrict__ y,
                                                 int64_t rows, int64_t dim, int64_t k, int64_t num_classes,
                                                 int64_t d, int64_t* labels, acc_t& sum, int64_t& count) {
  for (int64_t base = 0; base < rows; base += blockDim.x) {
    __syncthreads();
    if (base + threadIdx.x < rows) {
      const int64_t label = y[base + threadIdx.x];
      CUDA_KERNEL_ASSERT(label >= 0 && label < num_classes);
      labels[threadIdx.x] = label;
    }
    __syncthreads();
    const int64_t m = min(static_cast<int64_t>(blockDim.x), rows - base);
    for (int64_t j = 0; j < m; ++j) {
      if (labels[j] == k) {  // uniform across the block: no divergence
        ++count;
        if (d < dim) sum += static_cast<acc_t>(x[(base + j) * dim + d]);
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kReduceThreads) distribution_match_forward_kernel(
    const scalar_t* __restrict__ xr, const int64_t* __restrict__ yr, int64_t nr, const scalar_t* __restrict__ xs,
    const int64_t* __restrict__ ys, int64_t ns, int64_t dim, int64_t num_classes, double* __restrict__ diff,
    int64_t* __restrict__ counts, double* __restrict__ partials, scalar_t* __restrict__ loss, unsigned int* counter) {
  __shared__ int64_t labels[kReduceThreads];
  const int64_t k = blockIdx.y;
  const int64_t d = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  acc_t sum_r = acc_t(0), sum_s = acc_t(0);
  int64_t count_r = 0, count_s = 0;
  class_column_sum<scalar_t, acc_t>(xr, yr, nr, dim, k, num_classes, d, labels, sum_r, count_r);
  class_column_sum<scalar_t, acc_t>(xs, ys, ns, dim, k, num_classes, d, labels, sum_s, count_s);
  double v[1] = {0.0};
  if (d < dim) {
    const double df = dm_class_diff(static_cast<double>(sum_r), count_r, static_cast<double>(sum_s), count_s);
    diff[k * dim + d] = df;
    v[0] = df * df;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    counts[k * 2 + kDMReal] = count_r;
    counts[k * 2 + kDMSyn] = count_s;
  }
  block_sum(v);
  if (threadIdx.x == 0) partials[blockIdx.y * gridDim.x + blockIdx.x] = v[0];
  if (!last_block_done(counter)) return;
  double t[1] = {0.0};
  const int64_t blocks = static_cast<int64_t>(gridDim.x) * gridDim.y;
  for (int64_t i = threadIdx.x; i < blocks; i += blockDim.x) t[0] += __ldcg(partials + i);
  block_sum(t);
  if (threadIdx.x == 0) *loss = static_cast<scalar_t>(t[0]);
}

template <typename scalar_t, typename acc_t>
__global__ void distribution_match_backward_kernel(const scalar_t* __restrict__ grad_loss,
                                                   const double* __restrict__ diff, const int64_t* __restrict__ counts,
                                                   const int64_t* __restrict__ y, int side, int64_t rows, int64_t dim,
                                                   int64_t num_classes, scalar_t* __restrict__ out) {
  const double g = static_cast<double>(grad_loss[0]);
  const int64_t n = rows * dim;
  MEDISTILL_GRID_STRIDE_LOOP(idx, n) {
    const int64_t i = idx / dim;
    const int64_t k = y[i];
    CUDA_KERNEL_ASSERT(k >= 0 && k < num_classes);
    const acc_t scale = static_cast<acc_t>(dm_grad_scale(g, side, counts[k * 2 + side]));
    out[idx] = static_cast<scalar_t>(scale * static_cast<acc_t>(diff[k * dim + (idx - i * dim)]));
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> distribution_match_cuda(const at::Tensor& emb_real,
                                                                       const at::Tensor& y_real,
                                                                       const at::Tensor& emb_syn,
                                                                       const at::Tensor& y_syn, int64_t num_classes) {
  const char* op = "medistill::distribution_match";
  dm_check_args(op, emb_real, y_real, emb_syn, y_syn, num_classes);
  TORCH_CHECK(num_classes <= 65535, op, ": the CUDA kernel takes at most 65535 classes, got ", num_classes);
  c10::cuda::CUDAGuard guard(emb_real.device());
  const at::Tensor xr = emb_real.contiguous(), xs = emb_syn.contiguous();
  const at::Tensor yr = y_real.contiguous(), ys = y_syn.contiguous();
  const int64_t dim = xr.size(1);
  const auto opts = xr.options();
  at::Tensor loss = at::empty({}, opts);
  at::Tensor diff = at::empty({num_classes, dim}, opts.dtype(at::kDouble));
  at::Tensor counts = at::empty({num_classes, 2}, opts.dtype(at::kLong));
  const int64_t tiles = std::max<int64_t>(1, (dim + kReduceThreads - 1) / kReduceThreads);
  TORCH_CHECK(tiles <= kMaxBlocks, op, ": embedding size ", dim, " is too large for the CUDA kernel");
  at::Tensor partials = at::empty({tiles * num_classes}, opts.dtype(at::kDouble));
  at::Tensor counter = at::empty({1}, opts.dtype(at::kInt));
  auto stream = c10::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(cudaMemsetAsync(counter.data_ptr(), 0, sizeof(unsigned int), stream));
  const dim3 grid(static_cast<unsigned int>(tiles), static_cast<unsigned int>(num_classes));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xr.scalar_type(), "distribution_match_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    distribution_match_forward_kernel<scalar_t, acc_t><<<grid, kReduceThreads, 0, stream>>>(
        xr.data_ptr<scalar_t>(), yr.data_ptr<int64_t>(), xr.size(0), xs.data_ptr<scalar_t>(), ys.data_ptr<int64_t>(),
        xs.size(0), dim, num_classes, diff.data_ptr<double>(), counts.data_ptr<int64_t>(),
        partials.data_ptr<double>(), loss.data_ptr<scalar_t>(), static_cast<unsigned int*>(counter.data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, diff, counts};
}

at::Tensor distribution_match_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& class_diff,
                                            const at::Tensor& class_counts, const at::Tensor& y, int64_t side) {
  const char* op = "medistill::distribution_match_backward";
  TORCH_CHECK(side == kDMReal || side == kDMSyn, op, ": side must be 0 (real) or 1 (synthetic), got ", side);
  TORCH_CHECK(grad_loss.numel() == 1, op, ": grad_loss must hold one value, got shape ", grad_loss.sizes());
  TORCH_CHECK(class_diff.dim() == 2 && class_diff.scalar_type() == at::kDouble && class_diff.is_contiguous(), op,
              ": class_diff must be the float64 (K, D) tensor returned by distribution_match");
  TORCH_CHECK(class_counts.dim() == 2 && class_counts.size(0) == class_diff.size(0) && class_counts.size(1) == 2 &&
                  class_counts.scalar_type() == at::kLong && class_counts.is_contiguous(),
              op, ": class_counts must be the int64 (K, 2) tensor returned by distribution_match");
  MEDISTILL_CHECK_FLOAT(op, "grad_loss", grad_loss);
  MEDISTILL_CHECK_DIM(op, "y", y, 1);
  TORCH_CHECK(y.scalar_type() == at::kLong, op, ": y must be int64 class labels, got ", y.scalar_type());
  MEDISTILL_CHECK_SAME_DEVICE(op, grad_loss, class_diff);
  MEDISTILL_CHECK_SAME_DEVICE(op, grad_loss, class_counts);
  MEDISTILL_CHECK_SAME_DEVICE(op, grad_loss, y);
  c10::cuda::CUDAGuard guard(grad_loss.device());
  const int64_t rows = y.size(0), dim = class_diff.size(1);
  at::Tensor out = at::empty({rows, dim}, grad_loss.options());
  if (out.numel() == 0) return out;
  const at::Tensor yc = y.contiguous();
  const at::Tensor& g = grad_loss;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "distribution_match_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    distribution_match_backward_kernel<scalar_t, acc_t><<<grid_for(out.numel()), kThreadsPerBlock, 0, stream>>>(
        g.data_ptr<scalar_t>(), class_diff.data_ptr<double>(), class_counts.data_ptr<int64_t>(),
        yc.data_ptr<int64_t>(), static_cast<int>(side), rows, dim, class_diff.size(0), out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CUDA, m) {
  m.impl("distribution_match", &medistill::distribution_match_cuda);
  m.impl("distribution_match_backward", &medistill::distribution_match_backward_cuda);
}
