// Per-element math of channel_normalize, shared by the CPU and CUDA kernels.
#pragma once
#include "macros.h"

namespace medistill {

// inv_std = 1 / std[c], computed once per channel by the caller.
template <typename scalar_t, typename acc_t>
HOST_DEVICE_INLINE scalar_t channel_normalize_forward_element(scalar_t x, acc_t mean, acc_t inv_std) {
  return static_cast<scalar_t>((static_cast<acc_t>(x) - mean) * inv_std);
}

template <typename scalar_t, typename acc_t>
HOST_DEVICE_INLINE scalar_t channel_normalize_backward_element(scalar_t grad_out, acc_t inv_std) {
  return static_cast<scalar_t>(static_cast<acc_t>(grad_out) * inv_std);
}

// Channel of flat index `i` in a contiguous (B, C, H*W) tensor.
HOST_DEVICE_INLINE long channel_of(long i, long channels, long plane) {
  return (i / plane) % channels;
}

}  // namespace medistill
