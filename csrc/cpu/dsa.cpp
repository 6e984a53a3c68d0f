// CPU kernels of dsa (math in common/dsa_math.h).
//
// Parallel over the batch. Each sample runs its enabled stages in order -- colour, base (crop,
// cutout, flip), then one bilinear resampling per affine -- through per-thread scratch images, so
// colour is computed once per pixel and two resamplings cost 4 + 4 taps, not 16. The backward runs
// the adjoint stages in reverse (one thread owns a sample: scatters need no atomics). The stages
// use the shared per-pixel functions (make_plan, base_source_row/col, linear_at/bilinear_at,
// color_forward/backward) arranged for a CPU: the base stage copies runs of each row, a diagonal
// map (scale) resamples separably (rows, then columns), a general one (rotate) per pixel with
// branch-free taps (zero weight + clamped index outside the image). The per-sample pipeline runs
// an AVX2+FMA copy where the CPU has it (simd/dispatch.h). The CUDA kernel composes the same functions into one
// gather per output element.
//
// SIMD: the x86 code (banded AVX2 x pass, interleaved RGB resampling, SSE padded planes: csrc/cpu/simd/)
// is compiled only where simd/config.h sets MEDISTILL_X86_SIMD; elsewhere, and with
// MEDISTILL_SIMD=off, the same stages run their portable loops (tested on x86 by
// scripts/test_portable.sh).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../common/checks.h"
#include "../common/dsa_checks.h"
#include "../common/dsa_math.h"
#include "simd/config.h"
#include "simd/dispatch.h"
#if MEDISTILL_X86_SIMD
#include "simd/banded_rows_avx2.h"
#include "simd/interleaved_rgb_avx2.h"
#include "simd/padded_planes_sse.h"
#endif

namespace medistill {
namespace {

using dsa::Plan;

void check_args(const char* op, const char* name, const at::Tensor& x, const at::Tensor& ints,
                const at::Tensor& floats) {
  dsa_check_args(op, name, x, ints, floats);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": the CPU kernel supports float32 and float64, got ", x.scalar_type());
}

template <typename T>
struct Scratch;

// ---- colour -------------------------------------------------------------------------------------

// Sum with eight independent double accumulators (vectorisable, no long dependency chain).
template <typename T>
MEDISTILL_ALWAYS_INLINE double sum_of(const T* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int u = 0; u < 8; ++u) acc[u] += static_cast<double>(x[k + u]);
  double total = 0;
  for (; k < n; ++k) total += static_cast<double>(x[k]);
  for (int u = 0; u < 8; ++u) total += acc[u];
  return total;
}

// Colour (forward) or its adjoint (backward): both need the mean over (C, H, W) and, per pixel,
// the mean over channels of their input (`mc`: scratch plane of H * W).
template <bool kBackward, typename T>
MEDISTILL_ALWAYS_INLINE void color_stage(const Plan<T>& p, const T* __restrict__ in, T* __restrict__ out, int64_t C, int64_t HW,
                 T* __restrict__ mc) {
  const T mean = static_cast<T>(sum_of(in, C * HW) / static_cast<double>(C * HW));
  auto apply = [&](T v, T m) {
    return kBackward ? dsa::color_backward(v, m, mean, p) : dsa::color_forward(v, m, mean, p);
  };
  if (C == 1) {
    for (int64_t k = 0; k < HW; ++k) out[k] = apply(in[k], in[k]);
    return;
  }
  std::copy(in, in + HW, mc);
  for (int64_t c = 1; c < C; ++c)
    for (int64_t k = 0; k < HW; ++k) mc[k] += in[c * HW + k];
  const T channels = static_cast<T>(C);
  for (int64_t k = 0; k < HW; ++k) mc[k] /= channels;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < HW; ++k) out[c * HW + k] = apply(in[c * HW + k], mc[k]);
}

// ---- base stage: crop, cutout, flip -------------------------------------------------------------
// Output column j of a row reads input column base_source_col(j) (or zero). Those columns form at
// most a few runs with step +1 (no flip) or -1 (flip); each row is zero-filled, then its runs are
// copied. Run r of row kind k (0: row misses the cutout, 1: crosses it) covers output columns
// [start, start + len) and starts at input column src.
struct Run {
  int64_t start, len, src;
};

template <typename T>
MEDISTILL_ALWAYS_INLINE int column_runs(const Plan<T>& p, int64_t W, bool cut_row, Run* runs) {
  int n = 0;
  const int64_t step = p.flip ? -1 : 1;
  for (int64_t j = 0; j < W; ++j) {
    const int64_t s = dsa::base_source_col(p, j, W, cut_row);
    if (s < 0) continue;
    if (n > 0 && runs[n - 1].start + runs[n - 1].len == j && runs[n - 1].src + step * runs[n - 1].len == s) {
      ++runs[n - 1].len;
    } else {
      runs[n++] = Run{j, 1, s};
    }
  }
  return n;  // <= 2: the cutout splits the one run of a row at most once
}

// d[0, n) = s[0, n) for one run of a row (tens of elements): whole 32-byte chunks and an
// overlapping last chunk, inlined, instead of a memcpy call per run and row.
template <typename T>
MEDISTILL_ALWAYS_INLINE void copy_chunk(const T* __restrict__ s, T* __restrict__ d) {
  constexpr int kChunk = 32 / sizeof(T);
  T v[kChunk];
  for (int l = 0; l < kChunk; ++l) v[l] = s[l];
  for (int l = 0; l < kChunk; ++l) d[l] = v[l];
}

template <typename T>
MEDISTILL_ALWAYS_INLINE void copy_run(const T* __restrict__ s, T* __restrict__ d, int64_t n) {
  constexpr int64_t kChunk = 32 / sizeof(T);
  if (n < kChunk) {
    for (int64_t k = 0; k < n; ++k) d[k] = s[k];
    return;
  }
  int64_t k = 0;
  for (; k + kChunk <= n; k += kChunk) copy_chunk(s + k, d + k);
  if (k < n) copy_chunk(s + n - kChunk, d + n - kChunk);
}

template <bool kBackward, typename T>
MEDISTILL_ALWAYS_INLINE void base_stage(const Plan<T>& p, const T* __restrict__ in, T* __restrict__ out, int64_t C, int64_t H, int64_t W) {
  const int64_t HW = H * W;
  if (!p.flip && p.crop_h == 0 && p.crop_w == 0) {  // cutout alone: a copy, then zero the square (self-adjoint)
    std::memcpy(out, in, static_cast<size_t>(C * HW) * sizeof(T));
    const int64_t i0 = std::max<int64_t>(p.cut_h0, 0), i1 = std::min<int64_t>(p.cut_h1, H - 1);
    const int64_t j0 = std::max<int64_t>(p.cut_w0, 0), j1 = std::min<int64_t>(p.cut_w1, W - 1);
    if (j0 <= j1)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = i0; i <= i1; ++i) std::fill(out + c * HW + i * W + j0, out + c * HW + i * W + j1 + 1, T(0));
    return;
  }
  Run runs[2][4];
  const int n_runs[2] = {column_runs(p, W, false, runs[0]), column_runs(p, W, true, runs[1])};
  const bool covers_all = p.crop_h == 0 && p.crop_w == 0 && p.cut_h0 > p.cut_h1;  // flip alone writes every pixel
  if (!covers_all) std::fill(out, out + C * HW, T(0));
  for (int64_t i = 0; i < H; ++i) {
    const int64_t si = dsa::base_source_row(p, i, H);
    if (si < 0) continue;
    const int kind = dsa::base_cut_row(p, i) ? 1 : 0;
    for (int64_t c = 0; c < C; ++c) {
      // forward: out row i <- in row si; backward (adjoint): gin row si <- g row i.
      const T* src_row = in + c * HW + (kBackward ? i : si) * W;
      T* dst_row = out + c * HW + (kBackward ? si : i) * W;
      for (int r = 0; r < n_runs[kind]; ++r) {
        const Run& run = runs[kind][r];
        if (!p.flip) {
          const int64_t from = kBackward ? run.start : run.src, to = kBackward ? run.src : run.start;
          copy_run(src_row + from, dst_row + to, run.len);
        } else if (!kBackward) {
          const T* s = src_row + run.src;
          T* d = dst_row + run.start;
          for (int64_t k = 0; k < run.len; ++k) d[k] = s[-k];
        } else {
          const T* s = src_row + run.start;
          T* d = dst_row + run.src;
          for (int64_t k = 0; k < run.len; ++k) d[-k] = s[k];
        }
      }
    }
  }
}

// ---- resampling ---------------------------------------------------------------------------------

// Taps of one axis for a separable map: output coordinate k reads k0[k] and k1[k] with weights
// w0[k], w1[k]; a tap outside the image gets weight 0 and a valid index (zero padding).
template <typename T>
MEDISTILL_ALWAYS_INLINE void axis_taps(T origin, T step, int64_t n_out, int64_t n_in, int64_t* k0, int64_t* k1, T* w0, T* w1) {
  for (int64_t k = 0; k < n_out; ++k) {
    const auto t = dsa::linear_at<T>(origin + step * T(k));
    const bool in0 = t.k0 >= 0 && t.k0 < n_in, in1 = t.k0 + 1 >= 0 && t.k0 + 1 < n_in;
    k0[k] = in0 ? t.k0 : 0;
    k1[k] = in1 ? t.k0 + 1 : 0;
    w0[k] = in0 ? t.w0 : T(0);
    w1[k] = in1 ? t.w1 : T(0);
  }
}

// The transpose of one axis's taps: input coordinate q receives from output coordinates
// tj[q * kMaxFanIn + m] with weights tw[...] (unused slots: weight 0, index 0). False when some
// input coordinate feeds more than kMaxFanIn outputs (a shrink by more than ~2x), where the
// caller scatters instead. DSA's scales (1/1.2 .. 1.2) feed at most 3.
constexpr int kMaxFanIn = 4;

template <typename T>
MEDISTILL_ALWAYS_INLINE bool transpose_taps(const int64_t* k0, const int64_t* k1, const T* w0, const T* w1, int64_t n,
                                            int32_t* tj, T* tw, int32_t* count) {
  std::fill(tj, tj + n * kMaxFanIn, 0);
  std::fill(tw, tw + n * kMaxFanIn, T(0));
  std::fill(count, count + n, 0);
  for (int64_t j = 0; j < n; ++j) {
    for (int t = 0; t < 2; ++t) {
      const int64_t q = t == 0 ? k0[j] : k1[j];
      const T w = t == 0 ? w0[j] : w1[j];
      if (w == T(0)) continue;  // a tap outside the image (zero padding)
      if (count[q] == kMaxFanIn) return false;
      tj[q * kMaxFanIn + count[q]] = static_cast<int32_t>(j);
      tw[q * kMaxFanIn + count[q]] = w;
      ++count[q];
    }
  }
  return true;
}

// Diagonal map (scale): ix depends on j only, iy on i only. Forward: interpolate every row along
// x into tmp, then rows of tmp along y. Backward: the adjoints in reverse order. The y pass
// combines whole rows (vectorised by the compiler); the x pass, per element a gather, runs as
// banded AVX2 permutes for float32 where the CPU has AVX2 (simd/banded_rows_avx2.h), else as the
// scalar loops below (the portable path).
template <typename T>
struct AxisTaps {
  const int64_t *k0, *k1;
  const T *w0, *w1;
};

template <typename T>
MEDISTILL_ALWAYS_INLINE void x_forward_row(const AxisTaps<T>& x, const T* __restrict__ row, T* __restrict__ trow, int64_t W) {
  for (int64_t j = 0; j < W; ++j) trow[j] = x.w0[j] * row[x.k0[j]] + x.w1[j] * row[x.k1[j]];
}

// The adjoint of x_forward_row: a gather through the transposed table (tj, tw) when it exists,
// else one scatter per tap.
template <typename T>
MEDISTILL_ALWAYS_INLINE void x_adjoint_row(const AxisTaps<T>& x, const int32_t* tj, const T* tw, bool transposed,
                                           const T* __restrict__ trow, T* __restrict__ orow, int64_t W) {
  if (transposed) {  // input column q sums its (up to kMaxFanIn) output columns
    for (int64_t q = 0; q < W; ++q) {
      const int32_t* j = tj + q * kMaxFanIn;
      const T* w = tw + q * kMaxFanIn;
      orow[q] = w[0] * trow[j[0]] + w[1] * trow[j[1]] + w[2] * trow[j[2]] + w[3] * trow[j[3]];
    }
    return;
  }
  std::fill(orow, orow + W, T(0));  // one tap at a time (see resample_general)
  for (int64_t j = 0; j < W; ++j) orow[x.k0[j]] += x.w0[j] * trow[j];
  for (int64_t j = 0; j < W; ++j) orow[x.k1[j]] += x.w1[j] * trow[j];
}

#if MEDISTILL_X86_SIMD
// Banded x pass (float32, AVX2): builds the tables once per sample; false when the CPU lacks AVX2
// or the map does not fit the banded form, and the caller runs the scalar loops.
template <bool kBackward, typename S>
bool banded_x_tables(const dsa::PixelAffine<float>& M, int64_t W, S& s) {
  if (!cpu_has_avx2_fma()) return false;
  if (!banded::forward_taps(M.x0, M.xj, W, W, s.band_fwd)) return false;
  return !kBackward || banded::transpose_taps(s.band_fwd, W, s.band_bwd, s.band_fan_count);
}

// dst row r <- the x pass (kBackward: its adjoint) of src row r, for `rows` rows of W.
template <bool kBackward, typename S>
void banded_x_pass(const float* src, float* dst, int64_t rows, int64_t W, S& s) {
  const banded::Taps& taps = kBackward ? s.band_bwd : s.band_fwd;
  s.band_row.resize(W);
  // A row whose windows all lie inside src's rows is read in place: the taps that fall outside the
  // row (zero padding) have weight 0 there. The first and last rows, whose windows may reach past
  // the image, go through the zero-padded copy.
  const auto [lo, hi] = std::minmax_element(taps.base.begin(), taps.base.begin() + taps.n_blocks);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t first = r * W + *lo, end = r * W + *hi + banded::kWindow;
    if (first >= 0 && end <= rows * W) {
      banded::apply_row(taps, src + r * W, dst + r * W);
    } else {
      s.band_row.load(src + r * W);
      banded::apply_row(taps, s.band_row.data(), dst + r * W);
    }
  }
}
#endif  // MEDISTILL_X86_SIMD

template <bool kBackward, typename T>
MEDISTILL_ALWAYS_INLINE void resample_separable(const dsa::PixelAffine<T>& M, const T* __restrict__ in, T* __restrict__ out, int64_t C,
                        int64_t H, int64_t W, T* __restrict__ tmp, Scratch<T>& s) {
  int64_t *cx0 = s.ka.data(), *cx1 = s.ka.data() + W, *ry0 = s.kb.data(), *ry1 = s.kb.data() + H;
  T *wx0 = s.wa.data(), *wx1 = s.wa.data() + W, *wy0 = s.wb.data(), *wy1 = s.wb.data() + H;
  axis_taps(M.y0, M.yi, H, H, ry0, ry1, wy0, wy1);
  const int64_t HW = H * W;
  bool banded_x = false;
#if MEDISTILL_X86_SIMD
  if constexpr (std::is_same_v<T, float>) banded_x = banded_x_tables<kBackward>(M, W, s);
#endif
  const AxisTaps<T> x{cx0, cx1, wx0, wx1};
  int32_t* tj = s.fan_index.data();
  T* tw = s.fan_weight.data();
  bool transposed = false;
  if (!banded_x) {
    axis_taps(M.x0, M.xj, W, W, cx0, cx1, wx0, wx1);
    // Backward along x as a gather: the columns each input column feeds, in the transposed table.
    transposed = kBackward && transpose_taps(cx0, cx1, wx0, wx1, W, tj, tw, s.fan_count.data());
  }
#if MEDISTILL_X86_SIMD
  if constexpr (std::is_same_v<T, float>) {
    if (!kBackward && banded_x) banded_x_pass<false>(in, tmp, C * H, W, s);  // tmp <- x pass of every row
  }
#endif
  for (int64_t c = 0; c < C; ++c) {
    const T* ic = in + c * HW;
    T* oc = out + c * HW;
    T* tc = tmp + c * HW;
    if (!kBackward) {
      if (!banded_x)
        for (int64_t r = 0; r < H; ++r) x_forward_row(x, ic + r * W, tc + r * W, W);
      for (int64_t i = 0; i < H; ++i) {
        const T *t0 = tc + ry0[i] * W, *t1 = tc + ry1[i] * W;
        const T a = wy0[i], b = wy1[i];
        T* orow = oc + i * W;
        for (int64_t j = 0; j < W; ++j) orow[j] = a * t0[j] + b * t1[j];
      }
    } else {
      std::fill(tc, tc + HW, T(0));
      for (int64_t i = 0; i < H; ++i) {
        T *t0 = tc + ry0[i] * W, *t1 = tc + ry1[i] * W;
        const T a = wy0[i], b = wy1[i];
        const T* grow = ic + i * W;
        for (int64_t j = 0; j < W; ++j) t0[j] += a * grow[j];
        for (int64_t j = 0; j < W; ++j) t1[j] += b * grow[j];
      }
      if (!banded_x)
        for (int64_t r = 0; r < H; ++r) x_adjoint_row(x, tj, tw, transposed, tc + r * W, oc + r * W, W);
    }
  }
#if MEDISTILL_X86_SIMD
  if constexpr (std::is_same_v<T, float>) {
    if (kBackward && banded_x) banded_x_pass<true>(tmp, out, C * H, W, s);  // out <- x adjoint of every row
  }
#endif
}

// General map (rotate, or composed), one output row at a time. Pass 1 (branch-free, vectorised by
// the compiler) computes, lane by lane with the arithmetic of dsa::bilinear_at, every pixel's four
// corner indices and weights; a corner outside the image gets weight 0 and a clamped (valid) index,
// which is grid_sample's zero padding without a branch. Pass 2 reads (forward) or scatters to
// (backward) the four taps of every pixel. For finite inputs the sums equal dsa::visit_affine's
// (a masked tap adds an exact zero). kC > 0: channel count known at compile time.
template <typename T>
struct RowTaps {
  std::vector<int32_t> i00, i01, i10, i11;  // flat input indices of the corners (clamped)
  std::vector<T> w00, w01, w10, w11;        // bilinear weights, 0 for a corner outside the image
  explicit RowTaps(int64_t W) : i00(W), i01(W), i10(W), i11(W), w00(W), w01(W), w10(W), w11(W) {}
};

// Per-thread scratch: three images, a plane, per-axis and per-row tables, sized once per chunk.
template <typename T>
struct Scratch {
  std::vector<T> images, plane, wa, wb;
  std::vector<int64_t> ka, kb;
  std::vector<int32_t> fan_index, fan_count;
  std::vector<T> fan_weight;
  RowTaps<T> row;
#if MEDISTILL_X86_SIMD
  banded::Taps band_fwd, band_bwd;  // float32 AVX2 x pass (simd/banded_rows_avx2.h)
  std::vector<int> band_fan_count;
  banded::PaddedRow band_row;
#endif
  std::vector<T> padded_planes;  // C planes of (H + 2) x (W + 2): the float32 general resampling
#if MEDISTILL_X86_SIMD
  std::vector<float> rgb_image, rgb_row;  // 3 channels, float32, AVX2: simd/interleaved_rgb_avx2.h
#endif
  Scratch(int64_t numel, int64_t H, int64_t W)
      : images(static_cast<size_t>(3 * numel)), plane(static_cast<size_t>(H * W)), wa(static_cast<size_t>(2 * W)),
        wb(static_cast<size_t>(2 * H)), ka(static_cast<size_t>(2 * W)), kb(static_cast<size_t>(2 * H)),
        fan_index(static_cast<size_t>(kMaxFanIn * W)), fan_count(static_cast<size_t>(W)), fan_weight(static_cast<size_t>(kMaxFanIn * W)), row(W),
        padded_planes(static_cast<size_t>(numel / (H * W) * (H + 2) * (W + 2)))
#if MEDISTILL_X86_SIMD
        ,
        rgb_image(numel / (H * W) == 3 ? static_cast<size_t>((H + 2) * (W + 2) * 4) : 0),
        rgb_row(numel / (H * W) == 3 ? static_cast<size_t>(W * 4) : 0)
#endif
  {
  }
};

MEDISTILL_ALWAYS_INLINE int32_t clamp_index(int32_t k, int32_t hi) { return std::min(std::max(k, 0), hi); }

// Restrict-qualified pointer parameters let the compiler vectorise this loop. kPadded = false:
// i00..i11 get the corners' flat indices in the image, clamped into it. kPadded = true: i00 gets
// the top-left corner's flat index in planes padded by one zero pixel on each side ((H + 2) x
// (W + 2); an outside corner lands in the pad), and i01..i11 are not written.
template <bool kPadded, typename T>
MEDISTILL_ALWAYS_INLINE void row_taps_kernel(T rx, T ry, T xj, T yj, int32_t w, int32_t h, int32_t* __restrict__ i00,
                                             int32_t* __restrict__ i01, int32_t* __restrict__ i10,
                                             int32_t* __restrict__ i11, T* __restrict__ w00, T* __restrict__ w01,
                                             T* __restrict__ w10, T* __restrict__ w11) {
  for (int32_t j = 0; j < w; ++j) {
    const T ix = rx + xj * T(j), iy = ry + yj * T(j);
    int32_t x0 = static_cast<int32_t>(ix), y0 = static_cast<int32_t>(iy);  // floor_to_int, lane-wise
    x0 -= static_cast<int32_t>(static_cast<T>(x0) > ix);
    y0 -= static_cast<int32_t>(static_cast<T>(y0) > iy);
    const T fx = static_cast<T>(x0), fy = static_cast<T>(y0);
    const T wx1 = ix - fx, wx0 = (fx + T(1)) - ix, wy1 = iy - fy, wy0 = (fy + T(1)) - iy;
    // Masks as 0/1 factors (bitwise &, no branches) so the loop vectorises; a weight is finite here
    // (bounded coordinates), so a masked one is an exact 0.
    const int32_t mx0 = (x0 >= 0) & (x0 < w), mx1 = (x0 >= -1) & (x0 < w - 1);
    const int32_t my0 = (y0 >= 0) & (y0 < h), my1 = (y0 >= -1) & (y0 < h - 1);
    const T fx0 = static_cast<T>(mx0), fx1 = static_cast<T>(mx1), fy0 = static_cast<T>(my0), fy1 = static_cast<T>(my1);
    w00[j] = (wx0 * fx0) * (wy0 * fy0);
    w01[j] = (wx1 * fx1) * (wy0 * fy0);
    w10[j] = (wx0 * fx0) * (wy1 * fy1);
    w11[j] = (wx1 * fx1) * (wy1 * fy1);
    if constexpr (kPadded) {
      i00[j] = (std::min(std::max(y0, -1), h - 1) + 1) * (w + 2) + (std::min(std::max(x0, -1), w - 1) + 1);
    } else {
      const int32_t xa = clamp_index(x0, w - 1), xb = clamp_index(x0 + 1, w - 1);
      const int32_t ya = clamp_index(y0, h - 1) * w, yb = clamp_index(y0 + 1, h - 1) * w;
      i00[j] = ya + xa;
      i01[j] = ya + xb;
      i10[j] = yb + xa;
      i11[j] = yb + xb;
    }
  }
}

// The taps of output row i into t (see row_taps_kernel for kPadded).
template <bool kPadded, typename T>
MEDISTILL_ALWAYS_INLINE void row_taps(const dsa::PixelAffine<T>& M, int64_t i, int64_t H, int64_t W, RowTaps<T>& t) {
  row_taps_kernel<kPadded, T>(M.x0 + M.xi * T(i), M.y0 + M.yi * T(i), M.xj, M.yj, static_cast<int32_t>(W),
                              static_cast<int32_t>(H), t.i00.data(), t.i01.data(), t.i10.data(), t.i11.data(),
                              t.w00.data(), t.w01.data(), t.w10.data(), t.w11.data());
}

template <bool kBackward, int kC, typename T>
MEDISTILL_ALWAYS_INLINE void resample_general(const dsa::PixelAffine<T>& M, const T* __restrict__ in,
                                              T* __restrict__ out, int64_t C_rt, int64_t H, int64_t W, RowTaps<T>& t) {
  const int64_t C = kC > 0 ? kC : C_rt;
  const int64_t HW = H * W;
  if (kBackward) std::fill(out, out + C * HW, T(0));
  const int32_t* idx[4] = {t.i00.data(), t.i01.data(), t.i10.data(), t.i11.data()};
  const T* wts[4] = {t.w00.data(), t.w01.data(), t.w10.data(), t.w11.data()};
  for (int64_t i = 0; i < H; ++i) {
    row_taps<false>(M, i, H, W, t);
    if (!kBackward) {
      for (int64_t c = 0; c < C; ++c) {
        const T* __restrict__ r = in + c * HW;
        T* __restrict__ o = out + c * HW + i * W;
        for (int64_t j = 0; j < W; ++j)
          o[j] = wts[0][j] * r[idx[0][j]] + wts[1][j] * r[idx[1][j]] + wts[2][j] * r[idx[2][j]] +
                 wts[3][j] * r[idx[3][j]];
      }
    } else {
      // One corner at a time: neighbouring pixels share corners, and four read-modify-writes per
      // pixel would chain each pixel's stores to the next pixel's loads.
      const T* g = in + i * W;
      for (int k = 0; k < 4; ++k) {
        const int32_t* ik = idx[k];
        const T* wk = wts[k];
        for (int64_t j = 0; j < W; ++j) {
          const int64_t s = ik[j];
          const T w = wk[j];
          for (int64_t c = 0; c < C; ++c) out[c * HW + s] += w * g[c * HW + j];
        }
      }
    }
  }
}

// The padded layout of C planes in the scratch: (H + 2) x (W + 2) each, zero-filled, plus the row
// tables row_taps<true> writes into (base: the top-left corner in the padded plane).
struct PaddedPlanes {
  int64_t HW, PW, PHW;
  float* pad;
  int32_t* base;
  float *w00, *w01, *w10, *w11;
};

MEDISTILL_ALWAYS_INLINE PaddedPlanes zeroed_padded_planes(Scratch<float>& s, int64_t C, int64_t H, int64_t W) {
  PaddedPlanes P{H * W, W + 2, (H + 2) * (W + 2), s.padded_planes.data(), s.row.i00.data(),
                 s.row.w00.data(), s.row.w01.data(), s.row.w10.data(), s.row.w11.data()};
  std::fill(P.pad, P.pad + C * P.PHW, 0.f);
  return P;
}

// Row r of plane c inside the padding.
MEDISTILL_ALWAYS_INLINE float* interior_row(const PaddedPlanes& P, int64_t c, int64_t r) {
  return P.pad + c * P.PHW + (r + 1) * P.PW + 1;
}

// image (C, H, W) -> the padded planes' interiors.
MEDISTILL_ALWAYS_INLINE void fill_interior(const PaddedPlanes& P, const float* image, int64_t C, int64_t H, int64_t W) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t r = 0; r < H; ++r)
      std::memcpy(interior_row(P, c, r), image + c * P.HW + r * W, static_cast<size_t>(W) * sizeof(float));
}

// The padded planes' interiors -> image (C, H, W).
MEDISTILL_ALWAYS_INLINE void read_interior(const PaddedPlanes& P, float* image, int64_t C, int64_t H, int64_t W) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t r = 0; r < H; ++r)
      std::memcpy(image + c * P.HW + r * W, interior_row(P, c, r), static_cast<size_t>(W) * sizeof(float));
}

#if !MEDISTILL_X86_SIMD
// The per-pixel steps of the padded float32 resampling (simd/padded_planes_sse.h has the SSE
// versions): plain loops, vectorised by the compiler where the target allows.
namespace padded {

struct PixelWeights {
  float w00, w01, w10, w11;
};

MEDISTILL_ALWAYS_INLINE PixelWeights pixel_weights(float w00, float w01, float w10, float w11) {
  return {w00, w01, w10, w11};
}

MEDISTILL_ALWAYS_INLINE void scatter_pixel(float* p, int64_t PW, const PixelWeights& w, float g) {
  p[0] += w.w00 * g;
  p[1] += w.w01 * g;
  p[PW] += w.w10 * g;
  p[PW + 1] += w.w11 * g;
}

MEDISTILL_ALWAYS_INLINE void gather4(const float* pc, const int32_t* base, int64_t PW, const float* w00,
                                     const float* w01, const float* w10, const float* w11, float* o) {
  for (int l = 0; l < 4; ++l) {
    const float* p = pc + base[l];
    o[l] = w00[l] * p[0] + w01[l] * p[1] + w10[l] * p[PW] + w11[l] * p[PW + 1];
  }
}

}  // namespace padded
#endif  // !MEDISTILL_X86_SIMD

// Backward of a general map for float32: scatter into zero-padded gradient planes of
// (H + 2) x (W + 2), where a corner outside the image lands in the pad instead of needing a clamp.
// Then a pixel's two corners in one row are adjacent, and each pixel costs two 8-byte
// read-modify-writes per channel instead of four 4-byte ones. Even pixels of a row go first, then
// odd ones: neighbouring pixels share corners, and a load that half-overlaps the previous store
// stalls. The interior is copied out at the end.
template <int kC>
MEDISTILL_ALWAYS_INLINE void resample_general_backward_padded(const dsa::PixelAffine<float>& M,
                                                              const float* __restrict__ g, float* __restrict__ out,
                                                              int64_t C_rt, int64_t H, int64_t W, Scratch<float>& s) {
  const int64_t C = kC > 0 ? kC : C_rt;
  const PaddedPlanes P = zeroed_padded_planes(s, C, H, W);
  for (int64_t i = 0; i < H; ++i) {
    row_taps<true>(M, i, H, W, s.row);
    const float* gi = g + i * W;
    for (int64_t parity = 0; parity < 2; ++parity) {
      for (int64_t j = parity; j < W; j += 2) {
        const padded::PixelWeights w = padded::pixel_weights(P.w00[j], P.w01[j], P.w10[j], P.w11[j]);
        float* p = P.pad + P.base[j];
        for (int64_t c = 0; c < C; ++c) padded::scatter_pixel(p + c * P.PHW, P.PW, w, gi[c * P.HW + j]);
      }
    }
  }
  read_interior(P, out, C, H, W);
}

// Forward of a general map for float32, the same padded layout: the input is copied into the
// zero-padded planes, and four pixels at a time read their corners (padded::gather4: with SSE, two
// corner pairs per row of 8 bytes each, de-interleaved with shuffles, instead of 16 scalar loads).
template <int kC>
MEDISTILL_ALWAYS_INLINE void resample_general_forward_padded(const dsa::PixelAffine<float>& M,
                                                             const float* __restrict__ in, float* __restrict__ out,
                                                             int64_t C_rt, int64_t H, int64_t W, Scratch<float>& s) {
  const int64_t C = kC > 0 ? kC : C_rt;
  const PaddedPlanes P = zeroed_padded_planes(s, C, H, W);
  fill_interior(P, in, C, H, W);
  const int64_t HW = P.HW, PW = P.PW, PHW = P.PHW;
  const float* pad = P.pad;
  int32_t* base = P.base;
  float *w00 = P.w00, *w01 = P.w01, *w10 = P.w10, *w11 = P.w11;
  for (int64_t i = 0; i < H; ++i) {
    row_taps<true>(M, i, H, W, s.row);
    for (int64_t c = 0; c < C; ++c) {
      const float* pc = pad + c * PHW;
      float* o = out + c * HW + i * W;
      int64_t j = 0;
      for (; j + 4 <= W; j += 4) padded::gather4(pc, base + j, PW, w00 + j, w01 + j, w10 + j, w11 + j, o + j);
      for (; j < W; ++j) {
        const float* p = pc + base[j];
        o[j] = w00[j] * p[0] + w01[j] * p[1] + w10[j] * p[PW] + w11[j] * p[PW + 1];
      }
    }
  }
}

#if MEDISTILL_X86_SIMD
// General map on a 3-channel float32 image, where the CPU has AVX2: through one interleaved,
// zero-padded copy (simd/interleaved_rgb_avx2.h) with the padded taps of row_taps<true>.
template <bool kBackward>
MEDISTILL_ALWAYS_INLINE void resample_general_rgb(const dsa::PixelAffine<float>& M, const float* in, float* out,
                                                  int64_t H, int64_t W, Scratch<float>& s) {
  float* img = s.rgb_image.data();
  const int64_t HW = H * W;
  if (kBackward)
    rgb::zero(img, H, W);
  else
    rgb::interleave(in, H, W, img);
  const RowTaps<float>& t = s.row;
  for (int64_t i = 0; i < H; ++i) {
    row_taps<true>(M, i, H, W, s.row);
    if (kBackward)
      rgb::backward_row(img, W, t.i00.data(), t.w00.data(), t.w01.data(), t.w10.data(), t.w11.data(), in + i * W,
                        in + HW + i * W, in + 2 * HW + i * W, s.rgb_row.data());
    else
      rgb::forward_row(img, W, t.i00.data(), t.w00.data(), t.w01.data(), t.w10.data(), t.w11.data(), out + i * W,
                       out + HW + i * W, out + 2 * HW + i * W);
  }
  if (kBackward) rgb::deinterleave(img, H, W, out);
}
#endif  // MEDISTILL_X86_SIMD

template <bool kBackward, typename T>
MEDISTILL_ALWAYS_INLINE void resample_stage(const dsa::PixelAffine<T>& M, const T* in, T* out, int64_t C, int64_t H, int64_t W, T* tmp,
                    Scratch<T>& s) {
  if (M.xi == T(0) && M.yj == T(0)) return resample_separable<kBackward>(M, in, out, C, H, W, tmp, s);
  if constexpr (std::is_same_v<T, float>) {  // padded planes (float32)
#if MEDISTILL_X86_SIMD
    if (C == 3 && cpu_has_avx2_fma()) return resample_general_rgb<kBackward>(M, in, out, H, W, s);
#endif
    if (kBackward) {
      if (C == 1) return resample_general_backward_padded<1>(M, in, out, C, H, W, s);
      if (C == 3) return resample_general_backward_padded<3>(M, in, out, C, H, W, s);
      return resample_general_backward_padded<0>(M, in, out, C, H, W, s);
    }
    if (C == 1) return resample_general_forward_padded<1>(M, in, out, C, H, W, s);
    if (C == 3) return resample_general_forward_padded<3>(M, in, out, C, H, W, s);
    return resample_general_forward_padded<0>(M, in, out, C, H, W, s);
  }
  if (C == 1) return resample_general<kBackward, 1>(M, in, out, C, H, W, s.row);
  if (C == 3) return resample_general<kBackward, 3>(M, in, out, C, H, W, s.row);
  resample_general<kBackward, 0>(M, in, out, C, H, W, s.row);
}

// ---- per-sample drivers -------------------------------------------------------------------------

enum class Stage { kColor, kBase, kAffine0, kAffine1 };

// Stages in forward order (colour, base, innermost affine ... outermost affine).
template <typename T>
MEDISTILL_ALWAYS_INLINE int forward_stages(const Plan<T>& p, Stage* stages) {
  int n = 0;
  if (p.color) stages[n++] = Stage::kColor;
  if (p.flip || p.crop_h != 0 || p.crop_w != 0 || p.cut_h0 <= p.cut_h1) stages[n++] = Stage::kBase;
  if (p.n_affine == 2) stages[n++] = Stage::kAffine1;
  if (p.n_affine >= 1) stages[n++] = Stage::kAffine0;
  return n;
}

// Runs one sample through its stages (kBackward: the adjoints, in reverse order) from `in` to
// `out`, ping-ponging between two scratch images; the third is the separable resampler's tmp.
template <bool kBackward, typename T>
MEDISTILL_ALWAYS_INLINE void run_sample(const Plan<T>& p, const T* in, T* out, int64_t C, int64_t H, int64_t W, Scratch<T>& s) {
  const int64_t numel = C * H * W;
  Stage fwd[4], stages[4];
  const int n = forward_stages(p, fwd);
  for (int k = 0; k < n; ++k) stages[k] = kBackward ? fwd[n - 1 - k] : fwd[k];
  if (n == 0) {
    std::copy(in, in + numel, out);
    return;
  }
  T* buf[3] = {s.images.data(), s.images.data() + numel, s.images.data() + 2 * numel};
  const T* cur = in;
  for (int k = 0; k < n; ++k) {
    T* dst = (k == n - 1) ? out : buf[k % 2];
    switch (stages[k]) {
      case Stage::kColor: color_stage<kBackward>(p, cur, dst, C, H * W, s.plane.data()); break;
      case Stage::kBase: base_stage<kBackward>(p, cur, dst, C, H, W); break;
      case Stage::kAffine1: resample_stage<kBackward>(p.affine[1], cur, dst, C, H, W, buf[2], s); break;
      case Stage::kAffine0: resample_stage<kBackward>(p.affine[0], cur, dst, C, H, W, buf[2], s); break;
    }
    cur = dst;
  }
}

// Samples [b0, b1) of a batch: in/out and the params rows (row stride is/fs; row 0 for all when siamese).
template <typename T>
struct SampleRange {
  const T* in;
  T* out;
  const int32_t* ints;
  const float* floats;
  int64_t is, fs, b0, b1, C, H, W;
  bool siamese, align_corners, compose_affine;
};

template <bool kBackward, typename T>
MEDISTILL_ALWAYS_INLINE void run_samples(const SampleRange<T>& r) {
  const int64_t numel = r.C * r.H * r.W;
  Scratch<T> scratch(numel, r.H, r.W);
  for (int64_t b = r.b0; b < r.b1; ++b) {
    const int64_t row = r.siamese ? 0 : b;
    const auto plan = dsa::make_plan<T>(r.ints + row * r.is, r.floats + row * r.fs, r.H, r.W, r.align_corners,
                                        r.compose_affine);
    run_sample<kBackward>(plan, r.in + b * numel, r.out + b * numel, r.C, r.H, r.W, scratch);
  }
}

// The whole per-sample pipeline is inlined into each of these, so on CPUs with AVX2+FMA it runs the
// copy compiled for them (simd/dispatch.h).
template <typename T>
MEDISTILL_ALWAYS_INLINE void forward_samples_impl(SampleRange<T> r) { run_samples<false>(r); }
template <typename T>
MEDISTILL_ALWAYS_INLINE void backward_samples_impl(SampleRange<T> r) { run_samples<true>(r); }
MEDISTILL_X86_DISPATCH(forward_samples, forward_samples_impl)
MEDISTILL_X86_DISPATCH(backward_samples, backward_samples_impl)

template <bool kBackward>
at::Tensor run_batch(const char* op, const char* name, const at::Tensor& input, const at::Tensor& ints,
                     const at::Tensor& floats, bool align_corners, bool compose_affine) {
  check_args(op, name, input, ints, floats);
  at::Tensor xc = input.contiguous();
  const at::Tensor ip = dsa_params_rows(ints, at::kInt);
  const at::Tensor fp = dsa_params_rows(floats, at::kFloat);
  at::Tensor out = at::empty(xc.sizes(), xc.options());
  if (xc.numel() == 0) return out;
  const int64_t B = xc.size(0), C = xc.size(1), H = xc.size(2), W = xc.size(3);
  const int64_t numel = C * H * W;
  const bool siamese = ip.size(0) == 1;
  const int32_t* ipp = ip.data_ptr<int32_t>();
  const float* fpp = fp.data_ptr<float>();
  const int64_t is = ip.stride(0), fs = fp.stride(0);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "dsa_cpu", [&] {
    const scalar_t* in = xc.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    // Samples per task: at least kGrainElements elements (ATen's grain size), so small batches run
    // inline instead of waking threads.
    constexpr int64_t kGrainElements = 32768;
    const int64_t grain = std::max<int64_t>(1, kGrainElements / numel);
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      const SampleRange<scalar_t> r{in, o, ipp, fpp, is, fs, b0, b1, C, H, W, siamese, align_corners, compose_affine};
      if (kBackward)
        backward_samples<scalar_t>(r);
      else
        forward_samples<scalar_t>(r);
    });
  });
  return out;
}

at::Tensor dsa_cpu(const at::Tensor& x, const at::Tensor& ints, const at::Tensor& floats, bool align_corners,
                   bool compose_affine) {
  return run_batch<false>("medistill::dsa", "x", x, ints, floats, align_corners, compose_affine);
}

at::Tensor dsa_backward_cpu(const at::Tensor& grad_out, const at::Tensor& ints, const at::Tensor& floats,
                            bool align_corners, bool compose_affine) {
  return run_batch<true>("medistill::dsa_backward", "grad_out", grad_out, ints, floats, align_corners,
                         compose_affine);
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CPU, m) {
  m.impl("dsa", &medistill::dsa_cpu);
  m.impl("dsa_backward", &medistill::dsa_backward_cpu);
}
