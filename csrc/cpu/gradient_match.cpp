// CPU kernels of gradient_match (math and work layout in common/gradient_match_math.h).
// Items (rows, or chunks for mse/cos) are reduced in parallel to partial sums (double across blocks
// of 512 elements); the partials are combined per class in item order, so the result does not depend
// on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "../common/gradient_match_math.h"
#include "../common/matching_checks.h"
#include "simd/dispatch.h"

namespace medistill {
namespace {

constexpr int64_t kChunk = 8192;        // elements per mse/cos item
constexpr int64_t kTaskElems = 32768;   // elements per parallel_for task, roughly

void check_cpu_dtype(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op,
              ": the CPU kernel takes float32 or float64 gradients, got ", t.scalar_type());
}

std::vector<at::Tensor> contiguous_all(at::TensorList ts) {
  std::vector<at::Tensor> out;
  out.reserve(ts.size());
  for (const at::Tensor& t : ts) out.push_back(t.contiguous());
  return out;
}

int64_t grain_for(int64_t items, int64_t elems) {
  const int64_t per_item = std::max<int64_t>(1, elems / std::max<int64_t>(1, items));
  return std::max<int64_t>(1, kTaskElems / per_item);
}

// Partial sums of one item: (a.b, a.a, b.b) or ((b-a)^2, 0, 0). Blocks of kBlock elements are
// summed in the input precision (vectorised), the block sums in double.
constexpr int64_t kBlock = 512;

template <typename scalar_t>
MEDISTILL_ALWAYS_INLINE void reduce_item_impl(int metric, const scalar_t* a, const scalar_t* b, int64_t n,
                                              double* out) {
  double p0 = 0.0, p1 = 0.0, p2 = 0.0;
  for (int64_t s = 0; s < n; s += kBlock) {
    const int64_t e = std::min(n, s + kBlock);
    scalar_t q0 = 0, q1 = 0, q2 = 0;
    if (metric == kGMMse) {
#pragma omp simd reduction(+ : q0, q1, q2)
      for (int64_t i = s; i < e; ++i) gm_accumulate<scalar_t>(kGMMse, a[i], b[i], q0, q1, q2);
    } else {
#pragma omp simd reduction(+ : q0, q1, q2)
      for (int64_t i = s; i < e; ++i) gm_accumulate<scalar_t>(kGMOurs, a[i], b[i], q0, q1, q2);
    }
    p0 += q0;
    p1 += q1;
    p2 += q2;
  }
  out[0] = p0;
  out[1] = p1;
  out[2] = p2;
}
MEDISTILL_X86_DISPATCH(reduce_item, reduce_item_impl)

std::tuple<at::Tensor, at::Tensor> gradient_match_cpu(at::TensorList grads_real, at::TensorList grads_syn,
                                                      c10::string_view metric_name, bool batched) {
  const char* op = "medistill::gradient_match";
  const int metric = gm_parse_metric(op, metric_name);
  const auto shapes = gm_check_lists(op, grads_real, grads_syn, batched);
  check_cpu_dtype(op, grads_syn[0]);
  const int64_t classes = gm_classes(grads_syn, batched);
  const GMPlan plan = gm_plan(shapes, metric, /*backward=*/false, kChunk);
  const auto real = contiguous_all(grads_real);
  const auto syn = contiguous_all(grads_syn);
  const auto dtype = grads_syn[0].scalar_type();
  at::Tensor loss = at::empty(gm_loss_shape(classes, batched), grads_syn[0].options());
  at::Tensor stats = at::empty({classes, plan.stats_per_class, 3}, grads_syn[0].options().dtype(at::kDouble));
  if (classes == 0) return {loss, stats};

  const int n = static_cast<int>(shapes.size());
  const int64_t total_items = classes * plan.items_per_class;
  int64_t elems = 0;
  for (int t = 0; t < n; ++t) elems += plan.numel[t];
  std::vector<double> partials(static_cast<size_t>(total_items) * 3);
  double* st = stats.data_ptr<double>();

  AT_DISPATCH_FLOATING_TYPES(dtype, "gradient_match_cpu", [&] {
    std::vector<const scalar_t*> pa(n), pb(n);
    for (int t = 0; t < n; ++t) {
      pa[t] = real[t].data_ptr<scalar_t>();
      pb[t] = syn[t].data_ptr<scalar_t>();
    }
    at::parallel_for(0, total_items, grain_for(plan.items_per_class, elems), [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const GMItem it = gm_locate(item, plan.items_per_class, n, plan.item_begin.data(), plan.item_len.data(),
                                    plan.numel.data(), plan.stat_begin.data(), plan.kind.data());
        const int64_t base = it.k * plan.numel[it.t] + it.offset;
        reduce_item<scalar_t>(metric, pa[it.t] + base, pb[it.t] + base, it.len, &partials[item * 3]);
      }
    });
    // Per-class combination in item order.
    scalar_t* out = loss.data_ptr<scalar_t>();
    for (int64_t k = 0; k < classes; ++k) {
      const double* p = &partials[k * plan.items_per_class * 3];
      double total = 0.0;
      if (metric == kGMOurs) {
        // Forward "ours" items are exactly the rows, in stats order.
        double* s = st + k * plan.stats_per_class * 3;
        for (int64_t r = 0; r < plan.items_per_class; ++r) {
          const double na = std::sqrt(p[r * 3 + 1]), nb = std::sqrt(p[r * 3 + 2]);
          s[r * 3 + 0] = p[r * 3];
          s[r * 3 + 1] = na;
          s[r * 3 + 2] = nb;
          total += gm_cos_distance(p[r * 3], na, nb);
        }
      } else {
        double dot = 0.0, aa = 0.0, bb = 0.0;
        for (int64_t r = 0; r < plan.items_per_class; ++r) {
          dot += p[r * 3];
          aa += p[r * 3 + 1];
          bb += p[r * 3 + 2];
        }
        if (metric == kGMMse) {
          total = dot;
        } else {
          double* s = st + k * 3;
          s[0] = dot;
          s[1] = std::sqrt(aa);
          s[2] = std::sqrt(bb);
          total = gm_cos_distance(s[0], s[1], s[2]);
        }
      }
      out[k] = static_cast<scalar_t>(total);
    }
  });
  return {loss, stats};
}

template <typename scalar_t>
MEDISTILL_ALWAYS_INLINE void write_item_impl(const scalar_t* a, const scalar_t* b, scalar_t* ga, scalar_t* gb,
                                             int64_t n, int8_t kind, GMCoefs c) {
  using acc_t = scalar_t;  // float32 math for float32, float64 for float64
  if (kind == kGMZero) {
    if (ga) std::fill(ga, ga + n, scalar_t(0));
    if (gb) std::fill(gb, gb + n, scalar_t(0));
    return;
  }
  if (gb) {
    const acc_t ca = static_cast<acc_t>(c.syn_a), cb = static_cast<acc_t>(c.syn_b);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) gb[i] = ca * a[i] + cb * b[i];
  }
  if (ga) {
    const acc_t ca = static_cast<acc_t>(c.real_a), cb = static_cast<acc_t>(c.real_b);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) ga[i] = ca * a[i] + cb * b[i];
  }
}
MEDISTILL_X86_DISPATCH(write_item, write_item_impl)

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> gradient_match_backward_cpu(
    const at::Tensor& grad_loss, at::TensorList grads_real, at::TensorList grads_syn, const at::Tensor& stats,
    c10::string_view metric_name, bool batched, bool need_real, bool need_syn) {
  const char* op = "medistill::gradient_match_backward";
  const int metric = gm_parse_metric(op, metric_name);
  const auto shapes = gm_check_lists(op, grads_real, grads_syn, batched);
  check_cpu_dtype(op, grads_syn[0]);
  const int64_t classes = gm_classes(grads_syn, batched);
  const GMPlan plan = gm_plan(shapes, metric, /*backward=*/true, kChunk);
  TORCH_CHECK(grad_loss.numel() == classes, op, ": grad_loss needs one value per class (", classes, "), got shape ",
              grad_loss.sizes());
  TORCH_CHECK(stats.dim() == 3 && stats.size(0) == classes && stats.size(1) == plan.stats_per_class &&
                  stats.size(2) == 3 && stats.scalar_type() == at::kDouble,
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
  if (classes == 0 || (!need_real && !need_syn)) return {out_real, out_syn};
  const at::Tensor g64 = grad_loss.to(at::kDouble).contiguous();
  const at::Tensor st64 = stats.contiguous();
  const double* g = g64.data_ptr<double>();
  const double* st = st64.data_ptr<double>();
  const int64_t total_items = classes * plan.items_per_class;
  int64_t elems = 0;
  for (int t = 0; t < n; ++t) elems += plan.numel[t];

  AT_DISPATCH_FLOATING_TYPES(grads_syn[0].scalar_type(), "gradient_match_backward_cpu", [&] {
    std::vector<const scalar_t*> pa(n), pb(n);
    std::vector<scalar_t*> qa(n, nullptr), qb(n, nullptr);
    for (int t = 0; t < n; ++t) {
      pa[t] = real[t].data_ptr<scalar_t>();
      pb[t] = syn[t].data_ptr<scalar_t>();
      if (need_real) qa[t] = out_real[t].data_ptr<scalar_t>();
      if (need_syn) qb[t] = out_syn[t].data_ptr<scalar_t>();
    }
    at::parallel_for(0, total_items, grain_for(plan.items_per_class, elems), [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const GMItem it = gm_locate(item, plan.items_per_class, n, plan.item_begin.data(), plan.item_len.data(),
                                    plan.numel.data(), plan.stat_begin.data(), plan.kind.data());
        GMCoefs c = gm_zero_coefs();
        if (it.kind == kGMRows) {
          const double* s = st + (it.k * plan.stats_per_class + it.stat) * 3;
          c = gm_cos_coefs(s[0], s[1], s[2], g[it.k]);
        } else if (metric == kGMCos) {
          const double* s = st + it.k * 3;
          c = gm_cos_coefs(s[0], s[1], s[2], g[it.k]);
        } else if (metric == kGMMse) {
          c = gm_mse_coefs(g[it.k]);
        }
        const int64_t base = it.k * plan.numel[it.t] + it.offset;
        write_item<scalar_t>(pa[it.t] + base, pb[it.t] + base, qa[it.t] ? qa[it.t] + base : nullptr,
                             qb[it.t] ? qb[it.t] + base : nullptr, it.len, it.kind, c);
      }
    });
  });
  return {out_real, out_syn};
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CPU, m) {
  m.impl("gradient_match", &medistill::gradient_match_cpu);
  m.impl("gradient_match_backward", &medistill::gradient_match_backward_cpu);
}
