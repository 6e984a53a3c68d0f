// Bilinear resampling of 3-channel float32 images through one interleaved, zero-padded copy
// (DSA's rotate and composed maps on RGB input), with AVX2.
//
// Layout: (H + 2) x (W + 2) pixels of 4 floats (R, G, B, 0); the border pixels are zero (as
// grid_sample's zero padding). A pixel's two corners in one row are then 8 consecutive floats,
// so the forward reads one 32-byte vector per row for all three channels (instead of a pair per
// channel) and the backward does one 32-byte read-modify-write per row. The caller computes the
// corner index and the four weights of every pixel (row_taps<kPadded = true> in dsa.cpp): `base[j]`
// is pixel j's top-left corner as a pixel index into the padded grid.
#pragma once

#include "config.h"
#if !MEDISTILL_X86_SIMD
#error "interleaved_rgb_avx2.h is x86 SIMD code: include it only when MEDISTILL_X86_SIMD (simd/config.h)"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace medistill {
namespace rgb {

// Every pixel of the padded grid set to zero.
inline void zero(float* img, int64_t H, int64_t W) {
  std::memset(img, 0, static_cast<size_t>((H + 2) * (W + 2) * 4) * sizeof(float));
}

// W pixels of three plane rows -> W interleaved pixels (R, G, B, 0) at dst.
__attribute__((target("avx2,fma"))) inline void interleave_row(const float* R, const float* G, const float* B, int64_t W,
                                                               float* dst) {
  int64_t j = 0;
  for (; j + 4 <= W; j += 4) {
    __m128 r4 = _mm_loadu_ps(R + j), g4 = _mm_loadu_ps(G + j), b4 = _mm_loadu_ps(B + j), z = _mm_setzero_ps();
    _MM_TRANSPOSE4_PS(r4, g4, b4, z);  // now one pixel (R, G, B, 0) per vector
    _mm_storeu_ps(dst + j * 4, r4);
    _mm_storeu_ps(dst + j * 4 + 4, g4);
    _mm_storeu_ps(dst + j * 4 + 8, b4);
    _mm_storeu_ps(dst + j * 4 + 12, z);
  }
  for (; j < W; ++j) _mm_storeu_ps(dst + j * 4, _mm_setr_ps(R[j], G[j], B[j], 0.f));
}

// planes (3, H, W) -> the interior of the padded interleaved image; the border is zeroed.
__attribute__((target("avx2,fma"))) inline void interleave(const float* planes, int64_t H, int64_t W, float* img) {
  const int64_t PW = W + 2, HW = H * W;
  std::memset(img, 0, static_cast<size_t>(PW * 4) * sizeof(float));
  std::memset(img + (H + 1) * PW * 4, 0, static_cast<size_t>(PW * 4) * sizeof(float));
  for (int64_t r = 0; r < H; ++r) {
    float* row = img + (r + 1) * PW * 4;
    _mm_storeu_ps(row, _mm_setzero_ps());
    _mm_storeu_ps(row + (W + 1) * 4, _mm_setzero_ps());
    const float* R = planes + r * W;
    interleave_row(R, R + HW, R + 2 * HW, W, row + 4);
  }
}

// The interior of the padded interleaved image -> planes (3, H, W).
__attribute__((target("avx2,fma"))) inline void deinterleave(const float* img, int64_t H, int64_t W, float* planes) {
  const int64_t PW = W + 2, HW = H * W;
  for (int64_t r = 0; r < H; ++r) {
    const float* s = img + ((r + 1) * PW + 1) * 4;
    float *R = planes + r * W, *G = R + HW, *B = G + HW;
    int64_t j = 0;
    for (; j + 4 <= W; j += 4) {
      __m128 p0 = _mm_loadu_ps(s + j * 4), p1 = _mm_loadu_ps(s + j * 4 + 4), p2 = _mm_loadu_ps(s + j * 4 + 8),
             p3 = _mm_loadu_ps(s + j * 4 + 12);
      _MM_TRANSPOSE4_PS(p0, p1, p2, p3);  // p0 = R of the four pixels, p1 = G, p2 = B
      _mm_storeu_ps(R + j, p0);
      _mm_storeu_ps(G + j, p1);
      _mm_storeu_ps(B + j, p2);
    }
    for (; j < W; ++j) {
      R[j] = s[j * 4];
      G[j] = s[j * 4 + 1];
      B[j] = s[j * 4 + 2];
    }
  }
}

// Two weights as (a, a, a, a, b, b, b, b): one per corner of a row pair.
__attribute__((target("avx2,fma"))) inline __m256 corner_weights(float a, float b) {
  return _mm256_set_m128(_mm_set1_ps(b), _mm_set1_ps(a));
}

// One output pixel (R, G, B, 0) = w00 a + w01 b + w10 c + w11 d over its corners; `down`: one padded row.
__attribute__((target("avx2,fma"))) inline __m128 sample_pixel(const float* img, int64_t down, int32_t base,
                                                               float w00, float w01, float w10, float w11) {
  const float* p = img + static_cast<int64_t>(base) * 4;
  const __m256 acc = _mm256_fmadd_ps(_mm256_loadu_ps(p + down), corner_weights(w10, w11),
                                     _mm256_mul_ps(_mm256_loadu_ps(p), corner_weights(w00, w01)));
  return _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
}

// Output row: out_c[j] = w00 a + w01 b + w10 c + w11 d over pixel j's corners, for c = R, G, B.
__attribute__((target("avx2,fma"))) inline void forward_row(const float* img, int64_t W, const int32_t* base,
                                                            const float* w00, const float* w01, const float* w10,
                                                            const float* w11, float* R, float* G, float* B) {
  const int64_t down = (W + 2) * 4;
  int64_t j = 0;
  for (; j + 4 <= W; j += 4) {
    __m128 p0 = sample_pixel(img, down, base[j], w00[j], w01[j], w10[j], w11[j]);
    __m128 p1 = sample_pixel(img, down, base[j + 1], w00[j + 1], w01[j + 1], w10[j + 1], w11[j + 1]);
    __m128 p2 = sample_pixel(img, down, base[j + 2], w00[j + 2], w01[j + 2], w10[j + 2], w11[j + 2]);
    __m128 p3 = sample_pixel(img, down, base[j + 3], w00[j + 3], w01[j + 3], w10[j + 3], w11[j + 3]);
    _MM_TRANSPOSE4_PS(p0, p1, p2, p3);
    _mm_storeu_ps(R + j, p0);
    _mm_storeu_ps(G + j, p1);
    _mm_storeu_ps(B + j, p2);
  }
  for (; j < W; ++j) {
    alignas(16) float v[4];
    _mm_store_ps(v, sample_pixel(img, down, base[j], w00[j], w01[j], w10[j], w11[j]));
    R[j] = v[0];
    G[j] = v[1];
    B[j] = v[2];
  }
}

// Adjoint of forward_row: scatters g_c[j] (c = R, G, B) into pixel j's corners with its weights.
// Even pixels first, then odd ones: neighbouring pixels share corners, and a load that overlaps the
// previous store in part stalls. `row4` is scratch for W interleaved gradient pixels.
__attribute__((target("avx2,fma"))) inline void backward_row(float* img, int64_t W, const int32_t* base,
                                                             const float* w00, const float* w01, const float* w10,
                                                             const float* w11, const float* R, const float* G,
                                                             const float* B, float* row4) {
  const int64_t down = (W + 2) * 4;
  interleave_row(R, G, B, W, row4);
  for (int64_t parity = 0; parity < 2; ++parity) {
    for (int64_t j = parity; j < W; j += 2) {
      const __m128 gv = _mm_loadu_ps(row4 + j * 4);
      const __m256 g2 = _mm256_set_m128(gv, gv);
      float* p = img + static_cast<int64_t>(base[j]) * 4;
      _mm256_storeu_ps(p, _mm256_fmadd_ps(corner_weights(w00[j], w01[j]), g2, _mm256_loadu_ps(p)));
      _mm256_storeu_ps(p + down, _mm256_fmadd_ps(corner_weights(w10[j], w11[j]), g2, _mm256_loadu_ps(p + down)));
    }
  }
}

}  // namespace rgb
}  // namespace medistill
