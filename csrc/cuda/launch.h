// Launch geometry shared by the CUDA kernels: grid-stride loops over a capped grid.
#pragma once
#include <algorithm>
#include <cstdint>

namespace medistill {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 65535;

inline unsigned int grid_for(int64_t n, int threads = kThreadsPerBlock) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(blocks, kMaxBlocks)));
}

}  // namespace medistill

#define MEDISTILL_GRID_STRIDE_LOOP(i, n)                                                       \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);       \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
