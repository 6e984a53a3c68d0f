// Per-pixel math of differentiable Siamese augmentation (DSA), shared by the CPU and CUDA kernels.
//
// The op is a pure function of (x, params): params are sampled in Python and arrive as two small
// tensors per sample (layout below, mirrored by medistill/ops/dsa_params.py). Geometry is written
// as "which input pixels feed output pixel (i, j), with which weight" so that the forward is a
// gather over those taps and the backward the matching scatter; colour is a per-pixel affine map
// whose means are precomputed per sample (forward: mean of x; backward: mean of the gradient).
#pragma once
#include <cmath>
#include <cstdint>

#include "macros.h"

namespace medistill {
namespace dsa {

// Family bits of the per-sample bitmask, in the order mode 'M' applies them.
constexpr int kColor = 1;
constexpr int kCrop = 2;
constexpr int kCutout = 4;
constexpr int kFlip = 8;
constexpr int kScale = 16;
constexpr int kRotate = 32;

// Columns of the int32 params tensor (P, kNumInts).
constexpr int kFamilies = 0;  // bitmask of the families this sample gets
constexpr int kCropH = 1;     // row shift: out[i, j] = in[i + crop_h, j + crop_w], zero outside
constexpr int kCropW = 2;
constexpr int kCutoutH = 3;  // cutout centre row (published `offset_x`), in [0, H - size % 2]
constexpr int kCutoutW = 4;
constexpr int kFlipOn = 5;  // 1: mirror columns
constexpr int kNumInts = 6;

// Columns of the float32 params tensor (P, kNumFloats).
constexpr int kBrightness = 0;  // added: (u - 0.5) * 1.0
constexpr int kSaturation = 1;  // factor 2u
constexpr int kContrast = 2;    // factor u + 0.5
constexpr int kScaleW = 3;      // sx: multiplies the normalised x (column) coordinate
constexpr int kScaleH = 4;      // sy
constexpr int kAngle = 5;       // radians; theta = [[cos, -sin], [sin, cos]]
constexpr int kNumFloats = 6;

HOST_DEVICE_INLINE float dsa_cos(float v) { return cosf(v); }
HOST_DEVICE_INLINE double dsa_cos(double v) { return cos(v); }
HOST_DEVICE_INLINE float dsa_sin(float v) { return sinf(v); }
HOST_DEVICE_INLINE double dsa_sin(double v) { return sin(v); }

// floor(v) as an integer, for the bounded sampling coordinates here (|v| << 2^62).
template <typename T>
HOST_DEVICE_INLINE int64_t floor_to_int(T v) {
#if defined(__CUDA_ARCH__)
  return static_cast<int64_t>(floor(v));
#else
  const int64_t t = static_cast<int64_t>(v);  // truncates toward zero; no libm call
  return t - static_cast<int64_t>(static_cast<T>(t) > v);
#endif
}

// Linear part of an affine_grid theta (no translation): [gx, gy] = [[a, b], [c, d]] [xn, yn].
template <typename acc_t>
struct Affine {
  acc_t a, b, c, d;
};

// The same map in pixel units, as grid_sample reads it: output pixel (i, j) samples the input at
// column ix = x0 + xi * i + xj * j, row iy = y0 + yi * i + yj * j (affine_grid's normalised
// coordinates and grid_sample's unnormalisation folded together; see pixel_affine).
template <typename acc_t>
struct PixelAffine {
  acc_t x0, xi, xj, y0, yi, yj;
};

// Normalised coordinate k -> (k - centre) / half_extent with centre (n - 1) / 2 and half extent
// n / 2 (align_corners=False) or (n - 1) / 2 (True; 0 when n == 1, where the coordinate is 0), and
// back by the inverse, so ix = a (j - cw) + b (ew / eh) (i - ch) + cw.
template <typename acc_t>
HOST_DEVICE_INLINE PixelAffine<acc_t> pixel_affine(const Affine<acc_t>& A, int64_t H, int64_t W, bool align_corners) {
  const acc_t ew = align_corners ? acc_t(W - 1) / acc_t(2) : acc_t(W) / acc_t(2);
  const acc_t eh = align_corners ? acc_t(H - 1) / acc_t(2) : acc_t(H) / acc_t(2);
  const acc_t cw = acc_t(W - 1) / acc_t(2), ch = acc_t(H - 1) / acc_t(2);
  const bool w_ok = ew > acc_t(0), h_ok = eh > acc_t(0);
  PixelAffine<acc_t> m;
  m.xj = w_ok ? A.a : acc_t(0);
  m.xi = (w_ok && h_ok) ? A.b * ew / eh : acc_t(0);
  m.yj = (w_ok && h_ok) ? A.c * eh / ew : acc_t(0);
  m.yi = h_ok ? A.d : acc_t(0);
  m.x0 = cw - m.xj * cw - m.xi * ch;
  m.y0 = ch - m.yj * cw - m.yi * ch;
  return m;
}

// Linear interpolation along one axis at coordinate v: taps k0 = floor(v) and k0 + 1 with weights
// w0 = (k0 + 1) - v and w1 = v - k0, as grid_sample computes them.
template <typename acc_t>
struct Linear {
  int64_t k0;
  acc_t w0, w1;
};

template <typename acc_t>
HOST_DEVICE_INLINE Linear<acc_t> linear_at(acc_t v) {
  Linear<acc_t> t;
  t.k0 = floor_to_int(v);
  const acc_t f = static_cast<acc_t>(t.k0);
  t.w1 = v - f;
  t.w0 = (f + acc_t(1)) - v;
  return t;
}

// Bilinear corners and weights at (ix, iy): corner (y0, x0) gets wx0 * wy0, (y0, x0 + 1) wx1 * wy0,
// (y0 + 1, x0) wx0 * wy1, (y0 + 1, x0 + 1) wx1 * wy1.
template <typename acc_t>
struct Bilinear {
  int64_t x0, y0;
  acc_t wx0, wx1, wy0, wy1;
};

template <typename acc_t>
HOST_DEVICE_INLINE Bilinear<acc_t> bilinear_at(acc_t ix, acc_t iy) {
  const Linear<acc_t> lx = linear_at(ix), ly = linear_at(iy);
  return Bilinear<acc_t>{lx.k0, ly.k0, lx.w0, lx.w1, ly.w0, ly.w1};
}

// Everything one sample's transform needs, decoded once from its params row.
template <typename acc_t>
struct Plan {
  bool color;
  acc_t brightness, saturation, contrast;
  int64_t crop_h, crop_w;                  // 0 when crop is off
  int64_t cut_h0, cut_h1, cut_w0, cut_w1;  // inclusive rectangle; empty (h0 > h1) when off
  bool flip;                               // exact column mirror in the base stage
  int n_affine;                            // bilinear resamplings: 0, 1 or 2
  PixelAffine<acc_t> affine[2];            // affine[0] maps output coordinates (outermost)
};

// Side of the cutout square: int(n * 0.5 + 0.5) as in the published code.
HOST_DEVICE_INLINE int64_t cutout_size(int64_t n) { return (n + 1) / 2; }

// Decode params row `ip` (kNumInts) / `fp` (kNumFloats) for an H x W image. With `compose`,
// flip, scale and rotate become one resampling by theta = Flip * Scale * Rotate (when scale or
// rotate is on); otherwise rotate(scale(flip(.))) is applied exactly, one resampling each.
template <typename acc_t>
HOST_DEVICE_INLINE Plan<acc_t> make_plan(const int32_t* ip, const float* fp, int64_t H, int64_t W, bool align_corners,
                                           bool compose) {
  Plan<acc_t> p;
  const int fam = ip[kFamilies];
  p.color = (fam & kColor) != 0;
  p.brightness = static_cast<acc_t>(fp[kBrightness]);
  p.saturation = static_cast<acc_t>(fp[kSaturation]);
  p.contrast = static_cast<acc_t>(fp[kContrast]);
  p.crop_h = (fam & kCrop) ? ip[kCropH] : 0;
  p.crop_w = (fam & kCrop) ? ip[kCropW] : 0;
  p.cut_h0 = 1;
  p.cut_h1 = 0;
  p.cut_w0 = 1;
  p.cut_w1 = 0;
  if (fam & kCutout) {
    // Published: rows clamp(offset - size // 2 + k, 0, H - 1) for k < size, i.e. this interval.
    const int64_t sh = cutout_size(H), sw = cutout_size(W);
    const int64_t h0 = ip[kCutoutH] - sh / 2, w0 = ip[kCutoutW] - sw / 2;
    p.cut_h0 = h0 < 0 ? 0 : h0;
    p.cut_h1 = h0 + sh - 1 > H - 1 ? H - 1 : h0 + sh - 1;
    p.cut_w0 = w0 < 0 ? 0 : w0;
    p.cut_w1 = w0 + sw - 1 > W - 1 ? W - 1 : w0 + sw - 1;
  }
  const bool flip = (fam & kFlip) && ip[kFlipOn] != 0;
  const bool scale = (fam & kScale) != 0, rotate = (fam & kRotate) != 0;
  const acc_t sx = static_cast<acc_t>(fp[kScaleW]), sy = static_cast<acc_t>(fp[kScaleH]);
  const acc_t angle = static_cast<acc_t>(fp[kAngle]);
  const acc_t cs = dsa_cos(angle), sn = dsa_sin(angle);
  const Affine<acc_t> S{sx, acc_t(0), acc_t(0), sy};
  const Affine<acc_t> R{cs, -sn, sn, cs};
  p.flip = flip;
  p.n_affine = 0;
  if (compose && (scale || rotate)) {
    Affine<acc_t> M = rotate ? R : Affine<acc_t>{acc_t(1), acc_t(0), acc_t(0), acc_t(1)};
    if (scale) M = Affine<acc_t>{sx * M.a, sx * M.b, sy * M.c, sy * M.d};
    if (flip) M = Affine<acc_t>{-M.a, -M.b, M.c, M.d};
    p.affine[0] = pixel_affine(M, H, W, align_corners);
    p.n_affine = 1;
    p.flip = false;
  } else {
    if (rotate) p.affine[p.n_affine++] = pixel_affine(R, H, W, align_corners);
    if (scale) p.affine[p.n_affine++] = pixel_affine(S, H, W, align_corners);
  }
  return p;
}

// True when the plan moves pixels at all (anything besides colour).
template <typename acc_t>
HOST_DEVICE_INLINE bool has_geometry(const Plan<acc_t>& p) {
  return p.n_affine > 0 || p.flip || p.crop_h != 0 || p.crop_w != 0 || p.cut_h0 <= p.cut_h1;
}

// ---- colour -------------------------------------------------------------------------------------
// brightness, saturation, contrast in that order; `channel_mean` = mean of x over channels at this
// pixel, `sample_mean` = mean of x over (C, H, W). Brightness shifts both means; saturation keeps
// the channel mean, so contrast's mean is sample_mean + brightness.
template <typename acc_t>
HOST_DEVICE_INLINE acc_t color_forward(acc_t v, acc_t channel_mean, acc_t sample_mean, const Plan<acc_t>& p) {
  const acc_t v1 = v + p.brightness;
  const acc_t mc = channel_mean + p.brightness;
  const acc_t v2 = (v1 - mc) * p.saturation + mc;
  const acc_t m = sample_mean + p.brightness;
  return (v2 - m) * p.contrast + m;
}

// Adjoint of color_forward: contrast then saturation, each of the form (g - mean(g)) * f + mean(g).
// `channel_mean` / `sample_mean` are the means of the incoming gradient g.
template <typename acc_t>
HOST_DEVICE_INLINE acc_t color_backward(acc_t g, acc_t channel_mean, acc_t sample_mean, const Plan<acc_t>& p) {
  const acc_t g2 = (g - sample_mean) * p.contrast + sample_mean;
  const acc_t mc2 = (channel_mean - sample_mean) * p.contrast + sample_mean;
  return (g2 - mc2) * p.saturation + mc2;
}

// ---- base stage: crop, cutout, flip (integer moves) --------------------------------------------
// Output pixel (i, j) of the base stage reads input pixel (base_source_row, base_source_col) or zero.
// Order: crop (translate, zero fill), then cutout, then flip; read backwards from the output.

// Input row of output row i, or -1 (zero row).
template <typename acc_t>
HOST_DEVICE_INLINE int64_t base_source_row(const Plan<acc_t>& p, int64_t i, int64_t H) {
  const int64_t si = i + p.crop_h;
  return (si < 0 || si >= H) ? -1 : si;
}

// Whether output row i crosses the cutout square.
template <typename acc_t>
HOST_DEVICE_INLINE bool base_cut_row(const Plan<acc_t>& p, int64_t i) {
  return i >= p.cut_h0 && i <= p.cut_h1;
}

// Input column of output column j (in a row that crosses the cutout or not), or -1 (zero).
template <typename acc_t>
HOST_DEVICE_INLINE int64_t base_source_col(const Plan<acc_t>& p, int64_t j, int64_t W, bool cut_row) {
  const int64_t jj = p.flip ? W - 1 - j : j;
  if (cut_row && jj >= p.cut_w0 && jj <= p.cut_w1) return -1;
  const int64_t sj = jj + p.crop_w;
  return (sj < 0 || sj >= W) ? -1 : sj;
}

// Flat input index (row * W + col) that output pixel (i, j) of the base stage reads, or -1.
template <typename acc_t>
HOST_DEVICE_INLINE int64_t base_source(const Plan<acc_t>& p, int64_t i, int64_t j, int64_t H, int64_t W) {
  const int64_t si = base_source_row(p, i, H);
  if (si < 0) return -1;
  const int64_t sj = base_source_col(p, j, W, base_cut_row(p, i));
  return sj < 0 ? -1 : si * W + sj;
}

// ---- resampling: affine_grid + grid_sample(bilinear, zeros) ------------------------------------
// Calls visit(row, col, weight) for each in-bounds bilinear tap that output pixel (i, j) reads
// through `M` (taps outside the image read zero and are skipped).
template <typename acc_t, typename Visit>
HOST_DEVICE_INLINE void visit_affine(const PixelAffine<acc_t>& M, int64_t i, int64_t j, int64_t H, int64_t W,
                                     Visit&& visit) {
  const acc_t ix = (M.x0 + M.xi * acc_t(i)) + M.xj * acc_t(j);
  const acc_t iy = (M.y0 + M.yi * acc_t(i)) + M.yj * acc_t(j);
  const Bilinear<acc_t> t = bilinear_at(ix, iy);
  const bool in_x0 = t.x0 >= 0 && t.x0 < W, in_x1 = t.x0 + 1 >= 0 && t.x0 + 1 < W;
  const bool in_y0 = t.y0 >= 0 && t.y0 < H, in_y1 = t.y0 + 1 >= 0 && t.y0 + 1 < H;
  if (in_y0 && in_x0) visit(t.y0, t.x0, t.wx0 * t.wy0);
  if (in_y0 && in_x1) visit(t.y0, t.x0 + 1, t.wx1 * t.wy0);
  if (in_y1 && in_x0) visit(t.y0 + 1, t.x0, t.wx0 * t.wy1);
  if (in_y1 && in_x1) visit(t.y0 + 1, t.x0 + 1, t.wx1 * t.wy1);
}

// Calls visit(flat_input_index, weight) for every input pixel that output pixel (i, j) reads through
// the whole geometric chain (resamplings, then flip/cutout/crop). out = sum(weight * color(x)[index]).
// Up to 16 taps (two resamplings), 4 (one), or 1 (none).
template <typename acc_t, typename Visit>
HOST_DEVICE_INLINE void visit_sources(const Plan<acc_t>& p, int64_t i, int64_t j, int64_t H, int64_t W,
                                      Visit&& visit) {
  auto base = [&](int64_t bi, int64_t bj, acc_t w) {
    const int64_t s = base_source(p, bi, bj, H, W);
    if (s >= 0) visit(s, w);
  };
  if (p.n_affine == 0) {
    base(i, j, acc_t(1));
  } else if (p.n_affine == 1) {
    visit_affine(p.affine[0], i, j, H, W, base);
  } else {
    visit_affine(p.affine[0], i, j, H, W, [&](int64_t qi, int64_t qj, acc_t w1) {
      visit_affine(p.affine[1], qi, qj, H, W, [&](int64_t ri, int64_t rj, acc_t w2) { base(ri, rj, w1 * w2); });
    });
  }
}


// ---- parameter sampling (medistill::dsa_sample) --------------------------------------------------
// A draw is kNumUniforms uniforms u in [0, 1) per params row, mapped by per-column constants (made
// in medistill/ops/dsa_params.py, `_constants`): v = fma(u, span, offset), rounded once as
// torch.addcmul computes it (the eager sampler); the int columns are floor(v), the float columns v. With `pick_family` (mode 'S') the families column of every
// row is token_bits[floor(v)] of row 0's first uniform `u00`: one family for the whole call.
constexpr int kNumUniforms = kNumInts + kNumFloats;

HOST_DEVICE_INLINE void sample_row(const float* u, float u00, const float* offset, const float* span,
                                   const int32_t* token_bits, int64_t n_tokens, bool pick_family, int32_t* ints,
                                   float* floats) {
  for (int k = 0; k < kNumInts; ++k) ints[k] = static_cast<int32_t>(floorf(fmaf(u[k], span[k], offset[k])));
  for (int k = 0; k < kNumFloats; ++k)
    floats[k] = fmaf(u[kNumInts + k], span[kNumInts + k], offset[kNumInts + k]);
  if (pick_family) {
    int64_t f = static_cast<int64_t>(floorf(fmaf(u00, span[kFamilies], offset[kFamilies])));
    f = f < 0 ? 0 : (f >= n_tokens ? n_tokens - 1 : f);
    ints[kFamilies] = token_bits[f];
  }
}

}  // namespace dsa
}  // namespace medistill
