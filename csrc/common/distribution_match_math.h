// Math of distribution_match (DM's mean-embedding loss), shared by the CPU and CUDA kernels.
//   loss = sum over classes c present on both sides of sum_d (mean_real[c, d] - mean_syn[c, d])^2
// A class with no real or no synthetic row is skipped: its difference is 0, as is its gradient.
#pragma once
#include <cstdint>

#include "macros.h"

namespace medistill {

enum DMSide : int { kDMReal = 0, kDMSyn = 1 };

// mean_real - mean_syn of one class and column from the class sums and counts (0 when skipped).
HOST_DEVICE_INLINE double dm_class_diff(double sum_real, int64_t n_real, double sum_syn, int64_t n_syn) {
  if (n_real <= 0 || n_syn <= 0) return 0.0;
  return sum_real / static_cast<double>(n_real) - sum_syn / static_cast<double>(n_syn);
}

// d loss / d emb[i, d] = dm_grad_scale(...) * diff[y_i, d]: +2g / n_real (real), -2g / n_syn (syn).
HOST_DEVICE_INLINE double dm_grad_scale(double grad, int side, int64_t count) {
  if (count <= 0) return 0.0;
  return (side == kDMReal ? 2.0 : -2.0) * grad / static_cast<double>(count);
}

}  // namespace medistill
