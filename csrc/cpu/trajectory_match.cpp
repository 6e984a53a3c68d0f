// CPU kernels of trajectory_match (math in common/trajectory_match_math.h).
// Fixed-size chunks are reduced in parallel and combined in chunk order (double): the result does not
// depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <vector>

#include "../common/matching_checks.h"
#include "../common/trajectory_match_math.h"
#include "simd/dispatch.h"

namespace medistill {
namespace {

constexpr int64_t kChunk = 16384;

void check_cpu_dtype(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op,
              ": the CPU kernel takes float32 or float64 vectors, got ", t.scalar_type());
}

// Sums of one chunk: blocks of kBlock elements in the input precision (vectorised), blocks in double.
constexpr int64_t kBlock = 512;

template <typename scalar_t>
MEDISTILL_ALWAYS_INLINE void reduce_chunk_impl(const scalar_t* s, const scalar_t* t, const scalar_t* w0, int64_t i0,
                                               int64_t i1, double* out) {
  double num = 0.0, den = 0.0;
  for (int64_t b0 = i0; b0 < i1; b0 += kBlock) {
    const int64_t b1 = std::min(i1, b0 + kBlock);
    scalar_t bn = 0, bd = 0;
#pragma omp simd reduction(+ : bn, bd)
    for (int64_t i = b0; i < b1; ++i) tm_accumulate<scalar_t>(s[i], t[i], w0[i], bn, bd);
    num += bn;
    den += bd;
  }
  out[0] = num;
  out[1] = den;
}
MEDISTILL_X86_DISPATCH(reduce_chunk, reduce_chunk_impl)

template <typename scalar_t>
MEDISTILL_ALWAYS_INLINE void write_chunk_impl(const scalar_t* s, const scalar_t* t, const scalar_t* w0, int64_t i0,
                                              int64_t i1, TMCoefs c, scalar_t* gs, scalar_t* gt, scalar_t* g0) {
  const scalar_t cs = static_cast<scalar_t>(c.cs), cz = static_cast<scalar_t>(c.c0);
  if (gs) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) gs[i] = cs * (s[i] - t[i]);
  }
  if (gt) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) gt[i] = cz * (w0[i] - t[i]) - cs * (s[i] - t[i]);
  }
  if (g0) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) g0[i] = -cz * (w0[i] - t[i]);
  }
}
MEDISTILL_X86_DISPATCH(write_chunk, write_chunk_impl)

std::tuple<at::Tensor, at::Tensor> trajectory_match_cpu(const at::Tensor& w_student, const at::Tensor& w_target,
                                                        const at::Tensor& w_start) {
  const char* op = "medistill::trajectory_match";
  tm_check_args(op, w_student, w_target, w_start);
  check_cpu_dtype(op, w_student);
  const at::Tensor s = w_student.contiguous(), t = w_target.contiguous(), w0 = w_start.contiguous();
  const int64_t n = s.numel();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partials(static_cast<size_t>(chunks) * 2);
  at::Tensor loss = at::empty({}, s.options());
  at::Tensor stats = at::empty({2}, s.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "trajectory_match_cpu", [&] {
    const scalar_t* ps = s.data_ptr<scalar_t>();
    const scalar_t* pt = t.data_ptr<scalar_t>();
    const scalar_t* p0 = w0.data_ptr<scalar_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t i0 = c * kChunk;
        reduce_chunk<scalar_t>(ps, pt, p0, i0, std::min(n, i0 + kChunk), &partials[c * 2]);
      }
    });
    double num = 0.0, den = 0.0;
    for (int64_t c = 0; c < chunks; ++c) {
      num += partials[c * 2];
      den += partials[c * 2 + 1];
    }
    double* st = stats.data_ptr<double>();
    st[0] = num;
    st[1] = den;
    *loss.data_ptr<scalar_t>() = static_cast<scalar_t>(num / den);
  });
  return {loss, stats};
}

std::vector<at::Tensor> trajectory_match_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& w_student,
                                                      const at::Tensor& w_target, const at::Tensor& w_start,
                                                      const at::Tensor& stats, std::array<bool, 3> output_mask) {
  const char* op = "medistill::trajectory_match_backward";
  tm_check_args(op, w_student, w_target, w_start);
  check_cpu_dtype(op, w_student);
  TORCH_CHECK(grad_loss.numel() == 1, op, ": grad_loss must hold one value, got shape ", grad_loss.sizes());
  TORCH_CHECK(stats.numel() == 2 && stats.scalar_type() == at::kDouble, op,
              ": stats must be the float64 (2,) tensor returned by trajectory_match, got ", stats.sizes(), " ",
              stats.scalar_type());
  const at::Tensor s = w_student.contiguous(), t = w_target.contiguous(), w0 = w_start.contiguous();
  std::vector<at::Tensor> out;
  at::Tensor gs, gt, g0;
  if (output_mask[0]) out.push_back(gs = at::empty_like(s));
  if (output_mask[1]) out.push_back(gt = at::empty_like(s));
  if (output_mask[2]) out.push_back(g0 = at::empty_like(s));
  const int64_t n = s.numel();
  if (out.empty() || n == 0) return out;
  const at::Tensor st = stats.to(at::kDouble).contiguous();
  const TMCoefs c = tm_coefs(st.data_ptr<double>()[0], st.data_ptr<double>()[1], grad_loss.to(at::kDouble).item<double>());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "trajectory_match_backward_cpu", [&] {
    const scalar_t* ps = s.data_ptr<scalar_t>();
    const scalar_t* pt = t.data_ptr<scalar_t>();
    const scalar_t* p0 = w0.data_ptr<scalar_t>();
    scalar_t* qs = gs.defined() ? gs.data_ptr<scalar_t>() : nullptr;
    scalar_t* qt = gt.defined() ? gt.data_ptr<scalar_t>() : nullptr;
    scalar_t* q0 = g0.defined() ? g0.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, n, kChunk, [&](int64_t i0, int64_t i1) {
      write_chunk<scalar_t>(ps, pt, p0, i0, i1, c, qs, qt, q0);
    });
  });
  return out;
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CPU, m) {
  m.impl("trajectory_match", &medistill::trajectory_match_cpu);
  m.impl("trajectory_match_backward", &medistill::trajectory_match_backward_cpu);
}
