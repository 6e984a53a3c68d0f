// Which CPU SIMD code this build compiles, decided once for every translation unit.
//
// The x86 code (AVX2+FMA copies of hot loops chosen at run time, AVX2 and SSE intrinsics in the
// DSA resampler: the other headers of this folder) is compiled only where the target is x86-64
// and the compiler is GCC or clang, and not at all when setup.py is run with MEDISTILL_SIMD=off
// (it defines MEDISTILL_SIMD_OFF). Everywhere else -- aarch64, ppc64le, MSVC, or x86 with the knob
// off -- the kernels build their portable path: plain C++ loops that the compiler vectorises for
// the target's baseline (NEON, SSE2, ...). The portable path is what MEDISTILL_SIMD=off tests on
// x86 (scripts/test_portable.sh), so every platform builds code that the test suite has run.
//
//   MEDISTILL_X86_SIMD       1 when the x86 SIMD code is compiled in, else 0
//   cpu_has_avx2_fma()       whether this CPU runs the AVX2+FMA copies (always false without them)
//   cpu_simd_path()          a line for medistill.build_info(): what this build runs on this CPU
//   MEDISTILL_ALWAYS_INLINE  force-inline (the dispatch copies inline the whole loop)
#pragma once

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(MEDISTILL_SIMD_OFF)
#define MEDISTILL_X86_SIMD 1
#else
#define MEDISTILL_X86_SIMD 0
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define MEDISTILL_ALWAYS_INLINE __forceinline
#else
#define MEDISTILL_ALWAYS_INLINE inline __attribute__((always_inline))
#endif

namespace medistill {

#if MEDISTILL_X86_SIMD
inline bool cpu_has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}
#else
constexpr bool cpu_has_avx2_fma() { return false; }
#endif

inline const char* cpu_simd_path() {
#if MEDISTILL_X86_SIMD
  return cpu_has_avx2_fma() ? "x86-64 AVX2+FMA (chosen at run time; this CPU has it)"
                            : "x86-64 SSE2 baseline (chosen at run time; this CPU lacks AVX2/FMA)";
#elif defined(MEDISTILL_SIMD_OFF)
  return "portable (MEDISTILL_SIMD=off: no x86 SIMD code compiled)";
#else
  return "portable (no x86 SIMD code for this target)";
#endif
}

}  // namespace medistill
