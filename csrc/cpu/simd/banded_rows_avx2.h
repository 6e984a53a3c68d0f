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

#include "config.h"
#if !MEDISTILL_X86_SIMD
#error "banded_rows_avx2.h is x86 SIMD code: include it only when MEDISTILL_X86_SIMD (simd/config.h)"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../../common/dsa_math.h"

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

  // Sizes the tables for n outputs (allocates only when n grows); the builders write every entry.
  void reset(int64_t n, int taps) {
    n_out = n;
    n_blocks = (n + kLanes - 1) / kLanes;
    n_taps = taps;
    const auto lanes = static_cast<size_t>(n_blocks * kLanes);
    if (base.size() < static_cast<size_t>(n_blocks)) base.resize(static_cast<size_t>(n_blocks));
    for (int k = 0; k < kMaxBandTaps; ++k) {
      if (rel[k].size() < lanes) rel[k].resize(lanes);
      if (w[k].size() < lanes) w[k].resize(lanes);
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

// Forward taps of linear interpolation at v = origin + step * j (j < n_out) over an axis of n_in
// values: taps floor(v) and floor(v) + 1 with grid_sample's weights, zero outside the image (index
// clamped to the zero pad -1 or n_in). The taps are monotone in j, so a block's window starts at
// the smaller of its end lanes' first taps. False when a block needs more than one window.
inline bool forward_taps(float origin, float step, int64_t n_out, int64_t n_in, Taps& t) {
  t.reset(n_out, 2);
  for (int64_t b = 0; b < t.n_blocks; ++b) {
    const int64_t j0 = b * kLanes, n = std::min<int64_t>(kLanes, n_out - j0);
    int32_t q0[kLanes], q1[kLanes];
    float w0[kLanes], w1[kLanes];
    for (int64_t l = 0; l < n; ++l) {
      const auto lin = dsa::linear_at<float>(origin + step * static_cast<float>(j0 + l));
      const int64_t k0 = lin.k0, k1 = lin.k0 + 1;
      q0[l] = static_cast<int32_t>(std::clamp<int64_t>(k0, -1, n_in));
      q1[l] = static_cast<int32_t>(std::clamp<int64_t>(k1, -1, n_in));
      w0[l] = (k0 >= 0 && k0 < n_in) ? lin.w0 : 0.f;
      w1[l] = (k1 >= 0 && k1 < n_in) ? lin.w1 : 0.f;
    }
    const int32_t lo = std::min(q0[0], q0[n - 1]), hi = std::max(q1[0], q1[n - 1]);
    if (hi - lo >= kWindow) return false;
    t.base[b] = lo;
    for (int64_t l = 0; l < kLanes; ++l) {
      const bool lane = l < n;  // padding lanes read the window start with weight 0
      t.rel[0][j0 + l] = lane ? q0[l] - lo : 0;
      t.rel[1][j0 + l] = lane ? q1[l] - lo : 0;
      t.w[0][j0 + l] = lane ? w0[l] : 0.f;
      t.w[1][j0 + l] = lane ? w1[l] : 0.f;
    }
  }
  return true;
}

// The transpose of `fwd` over n_in inputs (each sums the forward outputs j that read it): the
// backward of the axis. Taps outside the image (the zero pad) and zero weights have no transpose.
// False when an input feeds more than kMaxBandTaps outputs or a block needs more than one window.
// `count`: scratch of n_in entries.
inline bool transpose_taps(const Taps& fwd, int64_t n_in, Taps& t, std::vector<int>& count) {
  t.reset(n_in, 0);
  count.assign(static_cast<size_t>(n_in), 0);
  // First pass: absolute output indices in rel, weights in w (lane = input q).
  for (int64_t b = 0; b < fwd.n_blocks; ++b)
    for (int64_t l = 0; l < kLanes; ++l) {
      const int64_t j = b * kLanes + l;
      if (j >= fwd.n_out) break;
      for (int k = 0; k < fwd.n_taps; ++k) {
        const float wt = fwd.w[k][j];
        if (wt == 0.f) continue;  // padding, out of image, or exactly on a sample point
        const int64_t q = fwd.base[b] + fwd.rel[k][j];
        int& c = count[static_cast<size_t>(q)];
        if (c == kMaxBandTaps) return false;
        t.rel[c][q] = static_cast<int32_t>(j);
        t.w[c][q] = wt;
        ++c;
      }
    }
  t.n_taps = std::max(1, *std::max_element(count.begin(), count.end()));
  for (int64_t b = 0; b < t.n_blocks; ++b) {
    int32_t lo = INT32_MAX, hi = INT32_MIN;
    const int64_t q0 = b * kLanes, n = std::min<int64_t>(kLanes, n_in - q0);
    for (int64_t l = 0; l < n; ++l)
      for (int k = 0; k < count[q0 + l]; ++k) {
        lo = std::min(lo, t.rel[k][q0 + l]);
        hi = std::max(hi, t.rel[k][q0 + l]);
      }
    if (lo == INT32_MAX) lo = hi = 0;  // a block no output reads: zeros (weights 0)
    if (hi - lo >= kWindow) return false;
    t.base[b] = lo;
    for (int64_t l = 0; l < kLanes; ++l)
      for (int k = 0; k < t.n_taps; ++k) {
        const bool used = l < n && k < count[q0 + l];
        t.rel[k][q0 + l] = used ? t.rel[k][q0 + l] - lo : 0;
        if (!used) t.w[k][q0 + l] = 0.f;
      }
  }
  return true;
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
    } else {  // the row's last, partial block: 4-, 2- and 1-lane stores (no memcpy call per row)
      const int64_t rest = t.n_out - j;
      __m128 part = _mm256_castps256_ps128(acc);
      float* o = out + j;
      if (rest & 4) {
        _mm_storeu_ps(o, part);
        part = _mm256_extractf128_ps(acc, 1);
        o += 4;
      }
      if (rest & 2) {
        _mm_storel_pi(reinterpret_cast<__m64*>(o), part);
        part = _mm_movehl_ps(part, part);
        o += 2;
      }
      if (rest & 1) _mm_store_ss(o, part);
    }
  }
}

}  // namespace banded
}  // namespace medistill
