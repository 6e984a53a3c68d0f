// CUDA kernels of gradient_match (math and work layout in common/gradient_match_math.h).
//
// One kernel launch for the forward and one for the backward, whatever the number of tensors:
// the per-tensor table (pointers, sizes, item layout) travels as a __grid_constant__ kernel
// parameter (up to kGMMaxTensors tensors; CUDA >= 12.1 allows 32 KiB of parameters), so nothing is
// copied to the device and the host never waits for the device. The forward additionally issues
// one 4-byte cudaMemsetAsync (the "last block done" counter): each block reduces items to partial
// sums, and the last block to finish combines them per class in a fixed order (deterministic).
// Accumulation is in float32 for float16/bfloat16/float32 (float64 for float64); the per-class
// combination and the stats are float64.
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
#include <tuple>
#include <vector>

#include "../common/gradient_match_math.h"
#include "../common/matching_checks.h"
#include "block_reduce.cuh"
#include "launch.h"

namespace medistill {
namespace {

constexpr int kGMMaxTensors = 256;
constexpr int64_t kChunk = 4096;  // elements per mse/cos item (16 per thread)

struct GMTable {
  const void* a[kGMMaxTensors];  // grads_real
  const void* b[kGMMaxTensors];  // grads_syn
  void* ga[kGMMaxTensors];       // d loss / d grads_real (backward, may be null)
  void* gb[kGMMaxTensors];       // d loss / d grads_syn (backward, may be null)
  int64_t numel[kGMMaxTensors];  // per class
  int64_t item_len[kGMMaxTensors];
  int64_t item_begin[kGMMaxTensors + 1];
  int64_t stat_begin[kGMMaxTensors];
  int8_t kind[kGMMaxTensors];
  int n;
  int metric;
  int64_t classes;
  int64_t items_per_class;
  int64_t stats_per_class;
};

GMTable make_table(const GMPlan& plan, int metric, int64_t classes, const std::vector<at::Tensor>& real,
                   const std::vector<at::Tensor>& syn) {
  GMTable tab{};
  tab.n = static_cast<int>(real.size());
  tab.metric = metric;
  tab.classes = classes;
  tab.items_per_class = plan.items_per_class;
  tab.stats_per_class = plan.stats_per_class;
  for (int t = 0; t < tab.n; ++t) {
    tab.a[t] = real[t].data_ptr();
    tab.b[t] = syn[t].data_ptr();
    tab.numel[t] = plan.numel[t];
    tab.item_len[t] = plan.item_len[t];
    tab.item_begin[t] = plan.item_begin[t];
    tab.stat_begin[t] = plan.stat_begin[t];
    tab.kind[t] = plan.kind[t];
  }
  tab.item_begin[tab.n] = plan.item_begin[tab.n];
  return tab;
}

__device__ __forceinline__ GMItem locate(const GMTable& tab, int64_t item) {
  return gm_locate(item, tab.items_per_class, tab.n, tab.item_begin, tab.item_len, tab.numel, tab.stat_begin,
                   tab.kind);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kReduceThreads)
    gradient_match_forward_kernel(const __grid_constant__ GMTable tab, acc_t* __restrict__ partials,
                                  double* __restrict__ stats, scalar_t* __restrict__ loss, unsigned int* counter) {
  const int64_t total = tab.classes * tab.items_per_class;
  for (int64_t item = blockIdx.x; item < total; item += gridDim.x) {
    const GMItem it = locate(tab, item);
    const int64_t base = it.k * tab.numel[it.t] + it.offset;
    const scalar_t* a = static_cast<const scalar_t*>(tab.a[it.t]) + base;
    const scalar_t* b = static_cast<const scalar_t*>(tab.b[it.t]) + base;
    acc_t v[3] = {acc_t(0), acc_t(0), acc_t(0)};
    for (int64_t i = threadIdx.x; i < it.len; i += blockDim.x) {
      gm_accumulate<acc_t>(tab.metric, static_cast<acc_t>(a[i]), static_cast<acc_t>(b[i]), v[0], v[1], v[2]);
    }
    block_sum(v);
    if (threadIdx.x == 0) {
      partials[item * 3 + 0] = v[0];
      partials[item * 3 + 1] = v[1];
      partials[item * 3 + 2] = v[2];
    }
  }
  if (!last_block_done(counter)) return;

  // The last block combines the partials of every class in a fixed order.
  for (int64_t k = 0; k < tab.classes; ++k) {
    const acc_t* p = partials + k * tab.items_per_class * 3;
    double v[3] = {0.0, 0.0, 0.0};
    if (tab.metric == kGMOurs) {
      // Forward "ours" items are exactly the rows, in stats order.
      double* s = stats + k * tab.stats_per_class * 3;
      for (int64_t r = threadIdx.x; r < tab.items_per_class; r += blockDim.x) {
        const double dot = static_cast<double>(__ldcg(p + r * 3));
        const double na = sqrt(static_cast<double>(__ldcg(p + r * 3 + 1)));
        const double nb = sqrt(static_cast<double>(__ldcg(p + r * 3 + 2)));
        s[r * 3 + 0] = dot;
        s[r * 3 + 1] = na;
        s[r * 3 + 2] = nb;
        v[0] += gm_cos_distance(dot, na, nb);
      }
    } else {
      for (int64_t r = threadIdx.x; r < tab.items_per_class; r += blockDim.x) {
        v[0] += static_cast<double>(__ldcg(p + r * 3));
        v[1] += static_cast<double>(__ldcg(p + r * 3 + 1));
        v[2] += static_cast<double>(__ldcg(p + r * 3 + 2));
      }
    }
    block_sum(v);
    if (threadIdx.x == 0) {
      double total_k = v[0];
      if (tab.metric == kGMCos) {
        double* s = stats + k * 3;
        s[0] = v[0];
        s[1] = sqrt(v[1]);
        s[2] = sqrt(v[2]);
        total_k = gm_cos_distance(s[0], s[1], s[2]);
      }
      loss[k] = static_cast<scalar_t>(total_k);
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kReduceThreads)
    gradient_match_backward_kernel(const __grid_constant__ GMTable tab, const scalar_t* __restrict__ grad_loss,
                                   int64_t grad_stride, const double* __restrict__ stats) {
  const int64_t total = tab.classes * tab.items_per_class;
  for (int64_t item = blockIdx.x; item < total; item += gridDim.x) {
    const GMItem it = locate(tab, item);
    const int64_t base = it.k * tab.numel[it.t] + it.offset;
    const scalar_t* a = static_cast<const scalar_t*>(tab.a[it.t]) + base;
    const scalar_t* b = static_cast<const scalar_t*>(tab.b[it.t]) + base;
    scalar_t* ga = tab.ga[it.t] ? static_cast<scalar_t*>(tab.ga[it.t]) + base : nullptr;
    scalar_t* gb = tab.gb[it.t] ? static_cast<scalar_t*>(tab.gb[it.t]) + base : nullptr;
    if (it.kind == kGMZero) {
      for (int64_t i = threadIdx.x; i < it.len; i += blockDim.x) {
        if (ga) ga[i] = scalar_t(0);
        if (gb) gb[i] = scalar_t(0);
      }
      continue;
    }
    const double g = static_cast<double>(grad_loss[it.k * grad_stride]);
    GMCoefs c;
    if (it.kind == kGMRows) {
      const double* s = stats + (it.k * tab.stats_per_class + it.stat) * 3;
      c = gm_cos_coefs(s[0], s[1], s[2], g);
    } else if (tab.metric == kGMCos) {
      const double* s = stats + it.k * 3;
      c = gm_cos_coefs(s[0], s[1], s[2], g);
    } else {
      c = gm_mse_coefs(g);
    }
    const acc_t sa = static_cast<acc_t>(c.syn_a), sb = static_cast<acc_t>(c.syn_b);
    const acc_t ra = static_cast<acc_t>(c.real_a), rb = static_cast<acc_t>(c.real_b);
    for (int64_t i = threadIdx.x; i < it.len; i += blockDim.x) {
      const acc_t x = static_cast<acc_t>(a[i]);
      const acc_t y = static_cast<acc_t>(b[i]);
      if (gb) gb[i] = static_cast<scalar_t>(sa * x + sb * y);
      if (ga) ga[i] = static_cast<scalar_t>(ra * x + rb * y);
    }
  }
}

std::vector<at::Tensor> contiguous_all(at::TensorList ts) {
  std::vector<at::Tensor> out;
  out.reserve(ts.size());
  for (const at::Tensor& t : ts) out.push_back(t.contiguous());
  return out;
}

void check_cuda_args(const char* op, at::TensorList syn) {
  TORCH_CHECK(syn[0].is_cuda(), op, ": the CUDA kernel needs CUDA tensors, got ", syn[0].device());
  TORCH_CHECK(static_cast<int64_t>(syn.size()) <= kGMMaxTensors, op, ": the CUDA kernel takes at most ",
              kGMMaxTensors, " tensors per call, got ", syn.size());
}

unsigned int blocks_for_items(int64_t items) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(items, kMaxBlocks)));
}

std::tuple<at::Tensor, at::Tensor> gradient_match_cuda(at::TensorList grads_real, at::TensorList grads_syn,
                                                       c10::string_view metric_name, bool batched) {
  const char* op = "medistill::gradient_match";
  const int metric = gm_parse_metric(op, metric_name);
  const auto shapes = gm_check_lists(op, grads_real, grads_syn, batched);
  check_cuda_args(op, grads_syn);
  c10::cuda::CUDAGuard guard(grads_syn[0].device());
  const int64_t classes = gm_classes(grads_syn, batched);
  const GMPlan plan = gm_plan(shapes, metric, /*backward=*/false, kChunk);
  const auto real = contiguous_all(grads_real);
  const auto syn = contiguous_all(grads_syn);
  const auto opts = grads_syn[0].options();
  at::Tensor loss = at::empty(gm_loss_shape(classes, batched), opts);
  at::Tensor stats = at::empty({classes, plan.stats_per_class, 3}, opts.dtype(at::kDouble));
  if (classes == 0) return {loss, stats};
  const int64_t total_items = classes * plan.items_per_class;
  const GMTable tab = make_table(plan, metric, classes, real, syn);
  auto stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor counter = at::empty({1}, opts.dtype(at::kInt));
  C10_CUDA_CHECK(cudaMemsetAsync(counter.data_ptr(), 0, sizeof(unsigned int), stream));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grads_syn[0].scalar_type(), "gradient_match_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor partials = at::empty({std::max<int64_t>(1, total_items) * 3},
                                    opts.dtype(c10::CppTypeToScalarType<acc_t>::value));
    gradient_match_forward_kernel<scalar_t, acc_t><<<blocks_for_items(total_items), kReduceThreads, 0, stream>>>(
        tab, partials.data_ptr<acc_t>(), stats.data_ptr<double>(), loss.data_ptr<scalar_t>(),
        static_cast<unsigned int*>(counter.data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, stats};
}

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> gradient_match_backward_cuda(
    const at::Tensor& grad_loss, at::TensorList grads_real, at::TensorList grads_syn, const at::Tensor& stats,
    c10::string_view metric_name, bool batched, bool need_real, bool need_syn) {
  const char* op = "medistill::gradient_match_backward";
  const int metric = gm_parse_metric(op, metric_name);
  const auto shapes = gm_check_lists(op, grads_real, grads_syn, batched);
  check_cuda_args(op, grads_syn);
  MEDISTILL_CHECK_SAME_DEVICE(op, grads_syn[0], grad_loss);
  MEDISTILL_CHECK_SAME_DEVICE(op, grads_syn[0], stats);
  c10::cuda::CUDAGuard guard(grads_syn[0].device());
  const int64_t classes = gm_classes(grads_syn, batched);
  const GMPlan plan = gm_plan(shapes, metric, /*backward=*/true, kChunk);
  TORCH_CHECK(grad_loss.sizes() == c10::IntArrayRef(gm_loss_shape(classes, batched)), op,
              ": grad_loss needs the loss's shape, got ", grad_loss.sizes());
  TORCH_CHECK(stats.dim() == 3 && stats.size(0) == classes && stats.size(1) == plan.stats_per_class &&
                  stats.size(2) == 3 && stats.scalar_type() == at::kDouble && stats.is_contiguous(),
              op, ": stats must be the float64 (", classes, ", ", plan.stats_per_class,
              ", 3) tensor returned by gradient_match, got ", stats.sizes(), " ", stats.scalar_type());
  const auto real = contiguous_all(grads_real);
  const auto syn = contiguous_all(grads_syn);
  const int n = static_cast<int>(shapes.size());
  std::vector<at::Tensor> out_real, out_syn;
  for (int t = 0; t < n; ++t) {
    if (need_real) out_real.push_back(at::empty_like(real[t]));
    if (need_syn) out_syn.push_back(at::empty_like(syn[t]));
  }
  const int64_t total_items = classes * plan.items_per_class;
  if (total_items == 0 || (!need_real && !need_syn)) return {out_real, out_syn};
  GMTable tab = make_table(plan, metric, classes, real, syn);
  for (int t = 0; t < n; ++t) {
    tab.ga[t] = need_real ? out_real[t].data_ptr() : nullptr;
    tab.gb[t] = need_syn ? out_syn[t].data_ptr() : nullptr;
  }
  // grad_loss is read through its stride (autograd often hands an expanded one): no copy kernel.
  const at::Tensor g = grad_loss.scalar_type() == syn[0].scalar_type() ? grad_loss : grad_loss.to(syn[0].scalar_type());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, syn[0].scalar_type(), "gradient_match_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    gradient_match_backward_kernel<scalar_t, acc_t><<<blocks_for_items(total_items), kReduceThreads, 0, stream>>>(
        tab, g.data_ptr<scalar_t>(), batched ? g.stride(0) : 0, stats.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out_real, out_syn};
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CUDA, m) {
  m.impl("gradient_match", &medistill::gradient_match_cuda);
  m.impl("gradient_match_backward", &medistill::gradient_match_backward_cuda);
}
