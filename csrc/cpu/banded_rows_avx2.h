// One axis of a separable bilinear resampling (DSA's scale), applied to every row of an image with
// AVX2 permutes instead of per-element gathers.
//
// The operator maps a row `src` of n_in values to a row `out` of n_out values:
//   out[j] = sum_k w[k][j] * src[base[j / 8] + rel[k][j]],   0 <= rel < 16,
// i.e. each block of 8 outputs reads a window of 16 consecutive inputs starting at base[block].
// Interpolation along an axis with a monotone map (scale: ix = origin + step * j) is such an
// operator with 2 taps, and so is its transpose (the backward) with at most kMaxBandTaps taps, as
// long as every block's taps fit one window (a shrink by less than ~1.6x; DSA's scales are 1/1.2 to
// 1.2). The builders return false otherwise and the caller keeps its scalar loops.
//
// `src` is a padded copy of the row: index -1 and n_in hold zeros (an out-of-image tap reads a zero,
// as grid_sample's zero padding), and it has slack for the 16-wide window loads.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/dsa_math.h"

namespace medistill {
namespace banded {

constexpr int kLanes = 8;
constexpr int kWindow = 16;
constexpr int kMaxBandTaps = 4;
constexpr int64_t kPad = 8;  // zeros before a padded row (index -1 .. -8)

struct Taps {
  int64_t n_out = 0, n_blocks = 0;
  int n_taps = 0;
  std::vector<int32_t> base;              // (n_blocks,) window start, an index into the padded row
  std::vector<int32_t> rel[kMaxBandTaps];  // (n_blocks * 8,) offset in the window, 0 .. 15
  std::vector<float> w[kMaxBandTaps];      // (n_blocks * 8,) weight; 0 for unused taps and padding lanes

  void reset(int64_t n, int taps) {
    n_out = n;
    n_blocks = (n + kLanes - 1) / kLanes;
    n_taps = taps;
    base.assign(static_cast<size_t>(n_blocks), 0);
    for (int k = 0; k < kMaxBandTaps; ++k) {
      rel[k].assign(static_cast<size_t>(n_blocks * kLanes), 0);
      w[k].assign(static_cast<size_t>(n_blocks * kLanes), 0.f);
    }
  }
};

// Padded row buffer: n zeros-padded values at data(), readable from data() - kPad to data() + n + kWindow.
struct PaddedRow {
  std::vector<float> buf;
  int64_t n = -1;
  float* data() { return buf.data() + kPad; }
  void resize(int64_t len) {
    if (len == n) return;
    n = len;
    buf.assign(static_cast<size_t>(kPad + len + kWindow + kLanes), 0.f);
  }
  void load(const float* row) { std::memcpy(data(), row, static_cast<size_t>(n) * sizeof(float)); }
};

// Builders' working arrays, kept across samples (no allocation once sized).
struct Workspace {
  std::vector<int32_t> q[kMaxBandTaps];  // absolute input index of tap k of output j
  std::vector<float> w[kMaxBandTaps];
  std::vector<int> count;                // taps used by output j
  void reset(int64_t n) {
    for (int k = 0; k < kMaxBandTaps; ++k) {
      q[k].assign(static_cast<size_t>(n), 0);
      w[k].assign(static_cast<size_t>(n), 0.f);
    }
    count.assign(static_cast<size_t>(n), 0);
  }
};

// Entries (output j, input index q, weight) of the operator, grouped by output block: sets each
// block's base to its smallest q; false when some block spans more than one window.
inline bool finish_blocks(Taps& t, const std::vector<int32_t> (&q)[kMaxBandTaps], const int* count) {
  for (int64_t b = 0; b < t.n_blocks; ++b) {
    int32_t lo = INT32_MAX, hi = INT32_MIN;
    for (int64_t j = b * kLanes; j < std::min<int64_t>(t.n_out, (b + 1) * kLanes); ++j)
      for (int k = 0; k < count[j]; ++k) {
        lo = std::min(lo, q[k][j]);
        hi = std::max(hi, q[k][j]);
      }
    if (lo == INT32_MAX) lo = hi = 0;  // a block with no taps reads zeros (weights 0)
    if (hi - lo >= kWindow) return false;
    t.base[b] = lo;
    for (int64_t j = b * kLanes; j < (b + 1) * kLanes; ++j)
      for (int k = 0; k < t.n_taps; ++k)
        t.rel[k][j] = (j < t.n_out && k < count[j]) ? q[k][j] - lo : 0;
  }
  return true;
}

// Forward taps of linear interpolation at v = origin + step * j (j < n_out) over an axis of n_in
// values: taps floor(v) and floor(v) + 1 with grid_sample's weights, zero outside the image (index
// clamped to the zero pad -1 or n_in). False when a block needs more than one window.
inline bool forward_taps(float origin, float step, int64_t n_out, int64_t n_in, Taps& t, Workspace& ws) {
  t.reset(n_out, 2);
  ws.reset(n_out);
  auto& q = ws.q;
  std::fill(ws.count.begin(), ws.count.end(), 2);
  for (int64_t j = 0; j < n_out; ++j) {
    const auto lin = dsa::linear_at<float>(origin + step * static_cast<float>(j));
    const int64_t k0 = lin.k0, k1 = lin.k0 + 1;
    const bool in0 = k0 >= 0 && k0 < n_in, in1 = k1 >= 0 && k1 < n_in;
    q[0][j] = static_cast<int32_t>(std::clamp<int64_t>(k0, -1, n_in));
    q[1][j] = static_cast<int32_t>(std::clamp<int64_t>(k1, -1, n_in));
    t.w[0][j] = in0 ? lin.w0 : 0.f;
    t.w[1][j] = in1 ? lin.w1 : 0.f;
  }
  return finish_blocks(t, q, ws.count.data());
}

// The transpose of `fwd` (n_in outputs, each summing the forward outputs j that read it): the
// backward of the axis. Taps outside the image (zero pad) have no transpose. False when an input
// feeds more than kMaxBandTaps outputs or a block needs more than one window.
// `fq`: the forward's absolute indices (a copy of its Workspace::q).
inline bool transpose_taps(const Taps& fwd, const std::vector<int32_t> (&fq)[kMaxBandTaps], int64_t n_in, Taps& t,
                           Workspace& ws) {
  t.reset(n_in, 0);
  ws.reset(n_in);
  auto& q = ws.q;
  auto& w = ws.w;
  auto& count = ws.count;
  for (int64_t j = 0; j < fwd.n_out; ++j)
    for (int k = 0; k < fwd.n_taps; ++k) {
      const int32_t s = fq[k][j];
      const float wt = fwd.w[k][j];
      if (s < 0 || s >= n_in || wt == 0.f) continue;
      if (count[s] == kMaxBandTaps) return false;
      q[count[s]][s] = static_cast<int32_t>(j);
      w[count[s]][s] = wt;
      ++count[s];
    }
  t.n_taps = std::max(1, *std::max_element(count.begin(), count.end()));
  for (int k = 0; k < kMaxBandTaps; ++k)
    for (int64_t s = 0; s < n_in; ++s) t.w[k][s] = w[k][s];
  return finish_blocks(t, q, count.data());
}

// out[0 .. n_out) = the operator applied to the padded row `src`.
__attribute__((target("avx2,fma"))) inline void apply_row(const Taps& t, const float* src, float* out) {
  const __m256i seven = _mm256_set1_epi32(kLanes - 1);
  for (int64_t b = 0; b < t.n_blocks; ++b) {
    const float* win = src + t.base[b];
    const __m256 lo = _mm256_loadu_ps(win), hi = _mm256_loadu_ps(win + kLanes);
    __m256 acc = _mm256_setzero_ps();
    for (int k = 0; k < t.n_taps; ++k) {
      const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.rel[k].data() + b * kLanes));
      const __m256 from_lo = _mm256_permutevar8x32_ps(lo, idx), from_hi = _mm256_permutevar8x32_ps(hi, idx);
      const __m256 v = _mm256_blendv_ps(from_lo, from_hi, _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, seven)));
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(t.w[k].data() + b * kLanes), v, acc);
    }
    const int64_t j = b * kLanes;
    if (j + kLanes <= t.n_out) {
      _mm256_storeu_ps(out + j, acc);
    } else {
      alignas(32) float last[kLanes];
      _mm256_store_ps(last, acc);
      std::memcpy(out + j, last, static_cast<size_t>(t.n_out - j) * sizeof(float));
    }
  }
}

}  // namespace banded
}  // namespace medistill
