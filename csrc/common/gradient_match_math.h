// Math and work layout of gradient_match, shared by the CPU and CUDA kernels.
//
// Inputs are T tensor pairs (a = real gradient, b = synthetic gradient) with a leading class dim K.
// Each tensor's class slice is cut into *items*; a kernel reduces every item to partial sums and
// the partials are combined per class in a fixed order (deterministic on both backends):
//   ours: item = one row (per-class shape O x ... -> O rows of prod(rest)); tensors whose
//         per-class shape has < 2 dims have no forward items and, in backward, "zero" items
//         (their gradient is 0); per row stats (dot, |a|, |b|) are kept for backward.
//   mse, cos: item = a chunk of consecutive elements; cos keeps one (dot, |a|, |b|) per class.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "macros.h"

namespace medistill {

enum GMMetric : int { kGMOurs = 0, kGMMse = 1, kGMCos = 2 };
enum GMItemKind : int8_t { kGMNone = 0, kGMRows = 1, kGMChunks = 2, kGMZero = 3 };

// The reference's "+ 0.000001" in the cosine denominator.
constexpr double kGMEps = 1e-6;

// Where one item lives: tensor t, class k, element range [offset, offset + len) of the class
// slice, and (rows only) its stats row within the class.
struct GMItem {
  int t;
  int8_t kind;
  int64_t k;
  int64_t offset;
  int64_t len;
  int64_t stat;
};

// Largest t with item_begin[t] <= local (item_begin is non-decreasing, item_begin[0] == 0).
HOST_DEVICE_INLINE int gm_find_tensor(const int64_t* item_begin, int n, int64_t local) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (item_begin[mid] <= local) lo = mid; else hi = mid - 1;
  }
  // The largest such t owns the item: a tensor without items has item_begin[t] == item_begin[t + 1].
  return lo;
}

HOST_DEVICE_INLINE GMItem gm_locate(int64_t item, int64_t items_per_class, int n, const int64_t* item_begin,
                                    const int64_t* item_len, const int64_t* numel, const int64_t* stat_begin,
                                    const int8_t* kind) {
  GMItem it;
  it.k = item / items_per_class;
  const int64_t local = item - it.k * items_per_class;
  it.t = gm_find_tensor(item_begin, n, local);
  const int64_t i = local - item_begin[it.t];
  it.kind = kind[it.t];
  it.offset = i * item_len[it.t];
  const int64_t rest = numel[it.t] - it.offset;
  it.len = rest < item_len[it.t] ? rest : item_len[it.t];
  it.stat = stat_begin[it.t] + i;
  return it;
}

// Cosine distance of one row (or of everything, for "cos") from its stats.
HOST_DEVICE_INLINE double gm_cos_distance(double dot, double norm_a, double norm_b) {
  return 1.0 - dot / (norm_a * norm_b + kGMEps);
}

// d loss / d b = syn_a * a + syn_b * b;  d loss / d a = real_a * a + real_b * b.
struct GMCoefs {
  double syn_a, syn_b, real_a, real_b;
};

// Gradient of 1 - dot / (|a||b| + eps). |x| has gradient 0 at x == 0 (as torch.norm), so a zero
// row yields finite gradients, never NaN.
HOST_DEVICE_INLINE GMCoefs gm_cos_coefs(double dot, double norm_a, double norm_b, double grad) {
  const double den = norm_a * norm_b + kGMEps;
  const double q = dot / (den * den);
  GMCoefs c;
  c.syn_a = -grad / den;
  c.syn_b = norm_b > 0.0 ? grad * q * norm_a / norm_b : 0.0;
  c.real_b = -grad / den;
  c.real_a = norm_a > 0.0 ? grad * q * norm_b / norm_a : 0.0;
  return c;
}

// Gradient of sum (b - a)^2.
HOST_DEVICE_INLINE GMCoefs gm_mse_coefs(double grad) {
  GMCoefs c;
  c.syn_a = -2.0 * grad;
  c.syn_b = 2.0 * grad;
  c.real_a = 2.0 * grad;
  c.real_b = -2.0 * grad;
  return c;
}

HOST_DEVICE_INLINE GMCoefs gm_zero_coefs() {
  GMCoefs c;
  c.syn_a = c.syn_b = c.real_a = c.real_b = 0.0;
  return c;
}

// Partial sums of one element: (a*b, a*a, b*b) for ours/cos, ((b-a)^2, -, -) for mse.
template <typename acc_t>
HOST_DEVICE_INLINE void gm_accumulate(int metric, acc_t a, acc_t b, acc_t& p0, acc_t& p1, acc_t& p2) {
  if (metric == kGMMse) {
    const acc_t d = b - a;
    p0 += d * d;
  } else {
    p0 += a * b;
    p1 += a * a;
    p2 += b * b;
  }
}

// Host-side plan: how each tensor is cut into items, per class.
struct GMPlan {
  std::vector<int64_t> numel, item_len, item_begin, stat_begin;
  std::vector<int8_t> kind;
  int64_t items_per_class = 0;
  int64_t stats_per_class = 0;  // ours: rows; cos: 1; mse: 0
};

// shapes: per-class shape of each tensor (without the leading class dim).
inline GMPlan gm_plan(const std::vector<std::vector<int64_t>>& shapes, int metric, bool backward, int64_t chunk) {
  GMPlan p;
  const size_t n = shapes.size();
  p.numel.resize(n);
  p.item_len.resize(n);
  p.item_begin.resize(n + 1);
  p.stat_begin.resize(n);
  p.kind.resize(n);
  int64_t items = 0, rows = 0;
  for (size_t t = 0; t < n; ++t) {
    int64_t numel = 1;
    for (int64_t s : shapes[t]) numel *= s;
    p.numel[t] = numel;
    p.item_begin[t] = items;
    p.stat_begin[t] = rows;
    int64_t count = 0;
    if (metric == kGMOurs && shapes[t].size() >= 2) {
      const int64_t r = shapes[t][0];
      p.kind[t] = kGMRows;
      p.item_len[t] = r > 0 ? numel / r : 0;
      count = r;
      rows += r;
    } else if (metric == kGMOurs && !backward) {
      p.kind[t] = kGMNone;
      p.item_len[t] = 1;
    } else {
      p.kind[t] = metric == kGMOurs ? kGMZero : kGMChunks;
      p.item_len[t] = chunk;
      count = (numel + chunk - 1) / chunk;
    }
    items += count;
  }
  p.item_begin[n] = items;
  p.items_per_class = items;
  p.stats_per_class = metric == kGMOurs ? rows : (metric == kGMCos ? 1 : 0);
  return p;
}

}  // namespace medistill
