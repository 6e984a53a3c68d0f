// Runtime choice between an AVX2+FMA build and a baseline build of one hot loop.
// The extension is compiled for baseline x86-64 (SSE2) so it loads everywhere; the matching-loss
// loops are memory/FMA bound, so on CPUs with AVX2+FMA they run a second copy compiled for it:
//   template <...> MEDISTILL_ALWAYS_INLINE void loop_impl(...);           // the loop, written once
//   MEDISTILL_X86_DISPATCH(loop, loop_impl)                                 // loop(...) picks a copy
// Without the x86 SIMD code (other compilers or architectures, or MEDISTILL_SIMD=off: config.h)
// loop(...) is loop_impl(...), the portable path.
#pragma once

#include "config.h"

#if MEDISTILL_X86_SIMD

#define MEDISTILL_X86_DISPATCH(name, impl)                                                    \
  template <typename scalar_t, typename... Args>                                               \
  __attribute__((target("avx2,fma"))) void name##_avx2(Args... args) {                         \
    impl<scalar_t>(args...);                                                                   \
  }                                                                                            \
  template <typename scalar_t, typename... Args>                                               \
  void name##_base(Args... args) {                                                             \
    impl<scalar_t>(args...);                                                                   \
  }                                                                                            \
  template <typename scalar_t, typename... Args>                                               \
  void name(Args... args) {                                                                    \
    if (::medistill::cpu_has_avx2_fma()) {                                                     \
      name##_avx2<scalar_t>(args...);                                                          \
    } else {                                                                                   \
      name##_base<scalar_t>(args...);                                                          \
    }                                                                                          \
  }

#else

#define MEDISTILL_X86_DISPATCH(name, impl)                                                    \
  template <typename scalar_t, typename... Args>                                               \
  void name(Args... args) {                                                                    \
    impl<scalar_t>(args...);                                                                   \
  }

#endif
