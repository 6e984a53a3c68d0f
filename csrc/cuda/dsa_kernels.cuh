// The CUDA kernels of dsa (math in common/dsa_math.h), included by dsa.cu. Written against a small
// set of CUDA builtins (threadIdx/blockIdx/blockDim/gridDim, __shared__, __syncthreads,
// __shfl_down_sync, atomicAdd, __ldcg) and nothing from ATen, so that
// tests/cuda_emulation/ can also run them on the host, one block at a time with a std::thread per
// CUDA thread: the CPU test suite runs the kernels' indexing, synchronisation and in-place
// steps, not only their per-element math.
//
// One launch each way, no memset, no host synchronisation (CUDA-graph capturable). Both kernels
// give one block to a sample at a time (blocks stride over the batch), so the sample's reductions
// stay inside the block:
//   forward  (dsa_forward_kernel): the sample's mean over (C, H, W) when it gets colour (a block
//            reduction), then each thread gathers outputs through the geometric chain, up to 16
//            taps, applying colour at each tap (dsa::visit_sources);
//   backward (dsa_backward_kernel): the block zeroes the sample's accumulator, scatters grad *
//            weight into it along the same taps (atomicAdd), then applies the colour adjoint in
//            place, one pixel per thread across its channels (the per-pixel channel mean needs all
//            of them). In float32/float64 the accumulator is the returned gradient itself; in
//            float16/bfloat16 it is a float32 scratch, cast into the gradient at the end.
// A thread decodes the sample's params once per sample (dsa::make_plan); params with one row (a
// Siamese draw) serve every sample.
#pragma once
#include <cstdint>
#include <type_traits>

#include "../common/dsa_math.h"

namespace medistill {
namespace dsa_kernels {

// Block size of both kernels (a multiple of 32). __launch_bounds__ caps registers so it always
// launches (the forward gather of two resamplings needs ~110 registers a thread).
constexpr int kSampleThreads = 256;

// Sum over the block (blockDim.x == kSampleThreads); every thread gets the total. Every thread of
// the block must call it (it synchronises the block).
template <typename acc_t>
__device__ acc_t block_sum(acc_t v) {
  __shared__ acc_t warp_sums[kSampleThreads / 32];
  __shared__ acc_t total;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kSampleThreads / 32 ? warp_sums[lane] : acc_t(0);
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) total = v;
  }
  __syncthreads();
  const acc_t result = total;
  __syncthreads();  // the shared slots may be reused by the next call
  return result;
}

// Per-sample params rows (one row serves every sample of a Siamese draw).
struct ParamsView {
  const int32_t* ints;
  const float* floats;
  int64_t int_stride, float_stride;
  bool siamese;
  __device__ __forceinline__ const int32_t* irow(int64_t b) const { return ints + (siamese ? 0 : b) * int_stride; }
  __device__ __forceinline__ const float* frow(int64_t b) const { return floats + (siamese ? 0 : b) * float_stride; }
};

struct Geometry {
  int64_t C, H, W;
  bool align_corners, compose;
};

// out[b] = dsa(x[b]) for each sample b of the block (x, out: (B, C, H, W) contiguous).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kSampleThreads)
    dsa_forward_kernel(const scalar_t* __restrict__ x, ParamsView params, scalar_t* __restrict__ out, int64_t batch,
                       Geometry geo) {
  const int64_t C = geo.C, H = geo.H, W = geo.W, HW = H * W, CHW = C * HW;
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const auto p = dsa::make_plan<acc_t>(params.irow(b), params.frow(b), H, W, geo.align_corners, geo.compose);
    const scalar_t* xb = x + b * CHW;
    acc_t mean = 0;
    if (p.color) {  // the same for every thread of the block: block_sum is reached by all or none
      acc_t s = 0;
      for (int64_t k = threadIdx.x; k < CHW; k += blockDim.x) s += static_cast<acc_t>(xb[k]);
      mean = block_sum(s) / static_cast<acc_t>(CHW);
    }
    scalar_t* ob = out + b * CHW;
    for (int64_t k = threadIdx.x; k < CHW; k += blockDim.x) {
      const int64_t j = k % W, i = (k / W) % H, c = k / HW;
      acc_t acc = 0;
      dsa::visit_sources(p, i, j, H, W, [&](int64_t s, acc_t w) {
        acc_t v = static_cast<acc_t>(xb[c * HW + s]);
        if (p.color) {
          acc_t mc = 0;
          for (int64_t cc = 0; cc < C; ++cc) mc += static_cast<acc_t>(xb[cc * HW + s]);
          v = dsa::color_forward(v, mc / static_cast<acc_t>(C), mean, p);
        }
        acc += w * v;
      });
      ob[k] = static_cast<scalar_t>(acc);
    }
  }
}

// gx[b] = dsa_backward(grad[b]) for each sample b of the block. `acc` (B, C, H, W) of acc_t is
// where the scatter sums: gx itself when scalar_t == acc_t, else a scratch cast into gx at the end.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kSampleThreads)
    dsa_backward_kernel(const scalar_t* __restrict__ grad, ParamsView params, acc_t* acc, scalar_t* gx,
                        int64_t batch, Geometry geo) {
  constexpr bool kInPlace = std::is_same_v<scalar_t, acc_t>;
  const int64_t C = geo.C, H = geo.H, W = geo.W, HW = H * W, CHW = C * HW;
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const auto p = dsa::make_plan<acc_t>(params.irow(b), params.frow(b), H, W, geo.align_corners, geo.compose);
    acc_t* ab = acc + b * CHW;
    for (int64_t k = threadIdx.x; k < CHW; k += blockDim.x) ab[k] = acc_t(0);
    __syncthreads();  // zeroed before any thread scatters
    const scalar_t* gb = grad + b * CHW;
    for (int64_t k = threadIdx.x; k < CHW; k += blockDim.x) {
      const acc_t g = static_cast<acc_t>(gb[k]);
      if (g == acc_t(0)) continue;
      const int64_t j = k % W, i = (k / W) % H, c = k / HW;
      acc_t* plane = ab + c * HW;
      dsa::visit_sources(p, i, j, H, W, [&](int64_t s, acc_t w) { atomicAdd(plane + s, w * g); });
    }
    __syncthreads();  // every scatter landed before it is read (__ldcg: read at L2, where atomics land)
    scalar_t* ob = gx + b * CHW;
    if (p.color) {  // the same for every thread of the block
      acc_t s = 0;
      for (int64_t k = threadIdx.x; k < CHW; k += blockDim.x) s += __ldcg(ab + k);
      const acc_t mean = block_sum(s) / static_cast<acc_t>(CHW);
      // One pixel per thread: its channel mean is read before any of its channels is overwritten.
      for (int64_t pix = threadIdx.x; pix < HW; pix += blockDim.x) {
        acc_t mc = 0;
        for (int64_t cc = 0; cc < C; ++cc) mc += __ldcg(ab + cc * HW + pix);
        mc /= static_cast<acc_t>(C);
        for (int64_t cc = 0; cc < C; ++cc)
          ob[cc * HW + pix] = static_cast<scalar_t>(dsa::color_backward(__ldcg(ab + cc * HW + pix), mc, mean, p));
      }
    } else if constexpr (!kInPlace) {
      for (int64_t k = threadIdx.x; k < CHW; k += blockDim.x) ob[k] = static_cast<scalar_t>(__ldcg(ab + k));
    }
  }
}

}  // namespace dsa_kernels
}  // namespace medistill
