// Math of trajectory_match (MTT's loss), shared by the CPU and CUDA kernels.
//   loss = num / den,  num = ||s - t||^2,  den = ||w0 - t||^2   (s = student, t = target, w0 = start)
#pragma once
#include "macros.h"

namespace medistill {

template <typename acc_t>
HOST_DEVICE_INLINE void tm_accumulate(acc_t s, acc_t t, acc_t w0, acc_t& num, acc_t& den) {
  const acc_t d = s - t;
  const acc_t e = w0 - t;
  num += d * d;
  den += e * e;
}

// grad_s = cs (s - t);  grad_t = -cs (s - t) + c0 (w0 - t);  grad_w0 = -c0 (w0 - t).
struct TMCoefs {
  double cs, c0;
};

HOST_DEVICE_INLINE TMCoefs tm_coefs(double num, double den, double grad) {
  TMCoefs c;
  c.cs = 2.0 * grad / den;
  c.c0 = 2.0 * grad * num / (den * den);
  return c;
}

}  // namespace medistill
