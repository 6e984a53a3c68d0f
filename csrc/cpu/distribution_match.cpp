// CPU kernels of distribution_match (math in common/distribution_match_math.h).
// Forward: one pass over each embedding matrix, summing rows into per-class accumulators (double);
// columns are split across threads, so every sum is taken in row order whatever the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../common/distribution_match_math.h"
#include "../common/matching_checks.h"
#include "simd/dispatch.h"

namespace medistill {
namespace {

constexpr int64_t kColumnGrain = 256;

void check_cpu_dtype(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op,
              ": the CPU kernel takes float32 or float64 embeddings, got ", t.scalar_type());
}

// Labels must lie in [0, num_classes); counts[k * 2 + side] += 1 per label.
void count_labels(const char* op, const char* name, const at::Tensor& y, int64_t num_classes, int side,
                  int64_t* counts) {
  const int64_t* p = y.data_ptr<int64_t>();
  for (int64_t i = 0; i < y.numel(); ++i) {
    TORCH_CHECK(p[i] >= 0 && p[i] < num_classes, op, ": ", name, "[", i, "] = ", p[i],
                " is out of range for num_classes = ", num_classes);
    counts[p[i] * 2 + side] += 1;
  }
}

// sums[y_i, d] += x[i, d] for d in [d0, d1), rows in order (streams x once; the K x D accumulators
// stay in cache).
template <typename scalar_t>
MEDISTILL_ALWAYS_INLINE void sum_rows_impl(const scalar_t* x, const int64_t* y, int64_t rows, int64_t dim, int64_t d0,
                                           int64_t d1, double* sums) {
  for (int64_t i = 0; i < rows; ++i) {
    const scalar_t* row = x + i * dim;
    double* acc = sums + y[i] * dim;
#pragma omp simd
    for (int64_t d = d0; d < d1; ++d) acc[d] += static_cast<double>(row[d]);
  }
}
MEDISTILL_X86_DISPATCH(sum_rows, sum_rows_impl)

std::tuple<at::Tensor, at::Tensor, at::Tensor> distribution_match_cpu(const at::Tensor& emb_real,
                                                                      const at::Tensor& y_real,
                                                                      const at::Tensor& emb_syn,
                                                                      const at::Tensor& y_syn, int64_t num_classes) {
  const char* op = "medistill::distribution_match";
  dm_check_args(op, emb_real, y_real, emb_syn, y_syn, num_classes);
  check_cpu_dtype(op, emb_real);
  const at::Tensor xr = emb_real.contiguous(), xs = emb_syn.contiguous();
  const at::Tensor yr = y_real.contiguous(), ys = y_syn.contiguous();
  const int64_t dim = xr.size(1);
  at::Tensor counts = at::zeros({num_classes, 2}, y_real.options());
  int64_t* cnt = counts.data_ptr<int64_t>();
  count_labels(op, "y_real", yr, num_classes, kDMReal, cnt);
  count_labels(op, "y_syn", ys, num_classes, kDMSyn, cnt);

  std::vector<double> sums_real(static_cast<size_t>(num_classes * dim), 0.0);
  std::vector<double> sums_syn(static_cast<size_t>(num_classes * dim), 0.0);
  at::Tensor diff = at::empty({num_classes, dim}, xr.options().dtype(at::kDouble));
  at::Tensor loss = at::empty({}, xr.options());
  double* df = diff.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(xr.scalar_type(), "distribution_match_cpu", [&] {
    at::parallel_for(0, dim, kColumnGrain, [&](int64_t d0, int64_t d1) {
      sum_rows<scalar_t>(xr.data_ptr<scalar_t>(), yr.data_ptr<int64_t>(), xr.size(0), dim, d0, d1, sums_real.data());
      sum_rows<scalar_t>(xs.data_ptr<scalar_t>(), ys.data_ptr<int64_t>(), xs.size(0), dim, d0, d1, sums_syn.data());
    });
    double total = 0.0;
    for (int64_t k = 0; k < num_classes; ++k) {
      for (int64_t d = 0; d < dim; ++d) {
        const int64_t j = k * dim + d;
        df[j] = dm_class_diff(sums_real[j], cnt[k * 2 + kDMReal], sums_syn[j], cnt[k * 2 + kDMSyn]);
        total += df[j] * df[j];
      }
    }
    *loss.data_ptr<scalar_t>() = static_cast<scalar_t>(total);
  });
  return {loss, diff, counts};
}

template <typename scalar_t>
MEDISTILL_ALWAYS_INLINE void scale_rows_impl(const int64_t* y, const double* diff, const int64_t* counts, double grad,
                                             int side, int64_t r0, int64_t r1, int64_t dim, scalar_t* out) {
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t k = y[i];
    const double scale = dm_grad_scale(grad, side, counts[k * 2 + side]);
    const double* diff_row = diff + k * dim;
    scalar_t* o = out + i * dim;
#pragma omp simd
    for (int64_t d = 0; d < dim; ++d) o[d] = static_cast<scalar_t>(scale * diff_row[d]);
  }
}
MEDISTILL_X86_DISPATCH(scale_rows, scale_rows_impl)

void check_backward_args(const char* op, const at::Tensor& grad_loss, const at::Tensor& class_diff,
                         const at::Tensor& class_counts, const at::Tensor& y, int64_t side) {
  TORCH_CHECK(side == kDMReal || side == kDMSyn, op, ": side must be 0 (real) or 1 (synthetic), got ", side);
  TORCH_CHECK(grad_loss.numel() == 1, op, ": grad_loss must hold one value, got shape ", grad_loss.sizes());
  TORCH_CHECK(class_diff.dim() == 2 && class_diff.scalar_type() == at::kDouble, op,
              ": class_diff must be the float64 (K, D) tensor returned by distribution_match, got ",
              class_diff.sizes(), " ", class_diff.scalar_type());
  TORCH_CHECK(class_counts.dim() == 2 && class_counts.size(0) == class_diff.size(0) && class_counts.size(1) == 2 &&
                  class_counts.scalar_type() == at::kLong,
              op, ": class_counts must be the int64 (K, 2) tensor returned by distribution_match, got ",
              class_counts.sizes(), " ", class_counts.scalar_type());
  MEDISTILL_CHECK_FLOAT(op, "grad_loss", grad_loss);
  MEDISTILL_CHECK_DIM(op, "y", y, 1);
  TORCH_CHECK(y.scalar_type() == at::kLong, op, ": y must be int64 class labels, got ", y.scalar_type());
}

at::Tensor distribution_match_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& class_diff,
                                           const at::Tensor& class_counts, const at::Tensor& y, int64_t side) {
  const char* op = "medistill::distribution_match_backward";
  check_backward_args(op, grad_loss, class_diff, class_counts, y, side);
  check_cpu_dtype(op, grad_loss);
  const int64_t num_classes = class_diff.size(0), dim = class_diff.size(1), rows = y.size(0);
  at::Tensor out = at::empty({rows, dim}, grad_loss.options());
  if (out.numel() == 0) return out;
  const double g = grad_loss.to(at::kDouble).item<double>();
  const at::Tensor yc = y.contiguous(), dc = class_diff.contiguous(), cc = class_counts.contiguous();
  const int64_t* py = yc.data_ptr<int64_t>();
  const double* pd = dc.data_ptr<double>();
  const int64_t* pc = cc.data_ptr<int64_t>();
  for (int64_t i = 0; i < rows; ++i) {
    TORCH_CHECK(py[i] >= 0 && py[i] < num_classes, op, ": y[", i, "] = ", py[i],
                " is out of range for num_classes = ", num_classes);
  }
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "distribution_match_backward_cpu", [&] {
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, dim)), [&](int64_t r0, int64_t r1) {
      scale_rows<scalar_t>(py, pd, pc, g, static_cast<int>(side), r0, r1, dim, po);
    });
  });
  return out;
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CPU, m) {
  m.impl("distribution_match", &medistill::distribution_match_cpu);
  m.impl("distribution_match_backward", &medistill::distribution_match_backward_cpu);
}
