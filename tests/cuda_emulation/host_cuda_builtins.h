// The CUDA builtins csrc/cuda/dsa_kernels.cuh uses, emulated on the host, so the CPU test suite can
// run those kernels (tests/test_dsa_cuda_emulated.py). A launch runs its blocks one after another;
// a block runs each of its CUDA threads as a std::thread. __syncthreads is a barrier over the
// block; a warp shuffle passes values through per-warp slots between two barriers of the warp;
// __shared__ variables are statics, shared by the block's threads; atomicAdd is an atomic
// read-modify-write. This checks indexing, synchronisation and data races between the kernels'
// phases; it does not model the GPU's memory ordering or its speed.
#pragma once
#include <atomic>
#include <barrier>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(threads)
#define __shared__ static

namespace host_cuda {

struct Dim3 {
  unsigned int x;
};

inline std::barrier<>* block_barrier = nullptr;            // the running block's threads
inline std::vector<std::unique_ptr<std::barrier<>>> warps;  // one per warp of 32
inline double warp_slots[32][32];                           // [warp][lane]: a shuffle's values

// Runs body() as `threads` CUDA threads (a multiple of 32) of each of `blocks` blocks in turn.
template <typename Body>
void launch(unsigned int blocks, unsigned int threads, Body&& body);

}  // namespace host_cuda

inline thread_local host_cuda::Dim3 threadIdx{0}, blockIdx{0};
inline host_cuda::Dim3 blockDim{0}, gridDim{0};

inline void __syncthreads() { host_cuda::block_barrier->arrive_and_wait(); }

// Every lane of the warp calls it (as the kernels do); lanes past the warp get their own value.
template <typename T>
T __shfl_down_sync(unsigned int /*mask*/, T v, int offset) {
  const unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  host_cuda::warp_slots[warp][lane] = static_cast<double>(v);
  host_cuda::warps[warp]->arrive_and_wait();
  const T result = lane + offset < 32 ? static_cast<T>(host_cuda::warp_slots[warp][lane + offset]) : v;
  host_cuda::warps[warp]->arrive_and_wait();
  return result;
}

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}

template <typename T>
T __ldcg(const T* address) {
  return std::atomic_ref<T>(*const_cast<T*>(address)).load();
}

template <typename Body>
void host_cuda::launch(unsigned int blocks, unsigned int threads, Body&& body) {
  gridDim.x = blocks;
  blockDim.x = threads;
  for (unsigned int b = 0; b < blocks; ++b) {
    std::barrier<> block(threads);
    block_barrier = &block;
    warps.clear();
    for (unsigned int w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<std::barrier<>>(32));
    std::vector<std::thread> running;
    for (unsigned int t = 0; t < threads; ++t)
      running.emplace_back([&body, t, b] {
        threadIdx.x = t;
        blockIdx.x = b;
        body();
      });
    for (auto& thread : running) thread.join();
  }
}
