// The per-pixel steps of DSA's general (rotate / composed) resampling of float32 planes padded by
// one zero pixel on each side (dsa.cpp: resample_general_forward_padded / _backward_padded), with
// SSE intrinsics: a pixel's two corners in one padded row are adjacent, so they move as one 8-byte
// half-vector. dsa.cpp has the portable versions of the same three functions (plain loops).
#pragma once

#include "config.h"
#if !MEDISTILL_X86_SIMD
#error "padded_planes_sse.h is x86 SIMD code: include it only when MEDISTILL_X86_SIMD (simd/config.h)"
#endif

#include <immintrin.h>

#include <cstdint>

namespace medistill {
namespace padded {

// A pixel's four bilinear weights as (w00, w01, 0, 0) and (w10, w11, 0, 0): its top and bottom corner pairs.
struct PixelWeights {
  __m128 top, bottom;
};

MEDISTILL_ALWAYS_INLINE PixelWeights pixel_weights(float w00, float w01, float w10, float w11) {
  return {_mm_unpacklo_ps(_mm_set_ss(w00), _mm_set_ss(w01)), _mm_unpacklo_ps(_mm_set_ss(w10), _mm_set_ss(w11))};
}

// Adds g times the weights into the pixel's corners p[0], p[1], p[PW], p[PW + 1] (two 8-byte
// read-modify-writes).
MEDISTILL_ALWAYS_INLINE void scatter_pixel(float* p, int64_t PW, const PixelWeights& w, float g) {
  const __m128 gv = _mm_set1_ps(g);
  __m64* top = reinterpret_cast<__m64*>(p);
  __m64* bottom = reinterpret_cast<__m64*>(p + PW);
  _mm_storel_pi(top, _mm_add_ps(_mm_loadl_pi(_mm_setzero_ps(), top), _mm_mul_ps(w.top, gv)));
  _mm_storel_pi(bottom, _mm_add_ps(_mm_loadl_pi(_mm_setzero_ps(), bottom), _mm_mul_ps(w.bottom, gv)));
}

// Four output pixels o[0..4) of one plane `pc` (row pitch PW): pixel l reads its corners at
// pc + base[l] with weights w00[l] .. w11[l]. The corner pairs are loaded 8 bytes at a time and
// de-interleaved with shuffles into the four corner vectors, instead of 16 scalar loads.
MEDISTILL_ALWAYS_INLINE void gather4(const float* pc, const int32_t* base, int64_t PW, const float* w00,
                                     const float* w01, const float* w10, const float* w11, float* o) {
  auto pair = [](__m128 v, const float* p, bool high) {
    return high ? _mm_loadh_pi(v, reinterpret_cast<const __m64*>(p)) : _mm_loadl_pi(v, reinterpret_cast<const __m64*>(p));
  };
  const float *p0 = pc + base[0], *p1 = pc + base[1], *p2 = pc + base[2], *p3 = pc + base[3];
  const __m128 t01 = pair(pair(_mm_setzero_ps(), p0, false), p1, true);  // (a0, a1) of pixels 0, 1
  const __m128 t23 = pair(pair(_mm_setzero_ps(), p2, false), p3, true);
  const __m128 b01 = pair(pair(_mm_setzero_ps(), p0 + PW, false), p1 + PW, true);
  const __m128 b23 = pair(pair(_mm_setzero_ps(), p2 + PW, false), p3 + PW, true);
  const __m128 a0 = _mm_shuffle_ps(t01, t23, _MM_SHUFFLE(2, 0, 2, 0)), a1 = _mm_shuffle_ps(t01, t23, _MM_SHUFFLE(3, 1, 3, 1));
  const __m128 c0 = _mm_shuffle_ps(b01, b23, _MM_SHUFFLE(2, 0, 2, 0)), c1 = _mm_shuffle_ps(b01, b23, _MM_SHUFFLE(3, 1, 3, 1));
  __m128 r = _mm_mul_ps(_mm_loadu_ps(w00), a0);
  r = _mm_add_ps(r, _mm_mul_ps(_mm_loadu_ps(w01), a1));
  r = _mm_add_ps(r, _mm_mul_ps(_mm_loadu_ps(w10), c0));
  r = _mm_add_ps(r, _mm_mul_ps(_mm_loadu_ps(w11), c1));
  _mm_storeu_ps(o, r);
}

}  // namespace padded
}  // namespace medistill
