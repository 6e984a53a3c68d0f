// Deterministic block-wide sums for the matching-loss kernels: warp shuffles, then one warp over the
// per-warp results. The summation order depends only on blockDim, never on timing.
#pragma once
#include <cuda_runtime.h>

namespace medistill {

constexpr int kReduceThreads = 256;  // block size of every kernel that calls block_sum (multiple of 32)

// Sums N values over the block; the result is valid in thread 0. Every thread must call it.
template <typename T, int N>
__device__ __forceinline__ void block_sum(T (&v)[N]) {
  __shared__ T partial[N][32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    for (int o = 16; o > 0; o >>= 1) v[j] += __shfl_down_sync(0xffffffffu, v[j], o);
  }
  __syncthreads();  // `partial` may still be read by a previous call
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < N; ++j) partial[j][warp] = v[j];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int j = 0; j < N; ++j) {
      v[j] = lane < warps ? partial[j][lane] : T(0);
      for (int o = 16; o > 0; o >>= 1) v[j] += __shfl_down_sync(0xffffffffu, v[j], o);
    }
  }
}

// "Last block done" handshake: each block calls this once after writing its results to global
// memory; it returns true in exactly one block (the last to arrive), which may then read every
// block's results. *counter must be 0 before the launch.
__device__ __forceinline__ bool last_block_done(unsigned int* counter) {
  __shared__ bool is_last;
  __threadfence();  // make this block's global writes visible before it signals
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(counter, 1u) == gridDim.x * gridDim.y - 1;
  __syncthreads();
  if (is_last) __threadfence();
  return is_last;
}

}  // namespace medistill
