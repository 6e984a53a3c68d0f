// CUDA kernels of dsa (math in common/dsa_math.h).
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
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "../common/checks.h"
#include "../common/dsa_checks.h"
#include "../common/dsa_math.h"
#include "launch.h"

namespace medistill {
namespace {

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

ParamsView params_view(const at::Tensor& ip, const at::Tensor& fp) {
  return ParamsView{ip.data_ptr<int32_t>(), fp.data_ptr<float>(), ip.stride(0), fp.stride(0), ip.size(0) == 1};
}

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

unsigned int per_sample_grid(int64_t batch) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(batch, kMaxBlocks)));
}

Geometry geometry_of(const at::Tensor& t, bool align_corners, bool compose_affine) {
  return Geometry{t.size(1), t.size(2), t.size(3), align_corners, compose_affine};
}

at::Tensor dsa_cuda(const at::Tensor& x, const at::Tensor& ints, const at::Tensor& floats, bool align_corners,
                    bool compose_affine) {
  const char* op = "medistill::dsa";
  dsa_check_args(op, "x", x, ints, floats);
  c10::cuda::CUDAGuard guard(x.device());
  at::Tensor xc = x.contiguous();
  const at::Tensor ip = dsa_params_rows(ints, at::kInt);
  const at::Tensor fp = dsa_params_rows(floats, at::kFloat);
  at::Tensor out = at::empty(xc.sizes(), xc.options());
  if (xc.numel() == 0) return out;
  const int64_t B = xc.size(0);
  const ParamsView params = params_view(ip, fp);
  const Geometry geo = geometry_of(xc, align_corners, compose_affine);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "dsa_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dsa_forward_kernel<scalar_t, acc_t><<<per_sample_grid(B), kSampleThreads, 0, stream>>>(
        xc.data_ptr<scalar_t>(), params, out.data_ptr<scalar_t>(), B, geo);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor dsa_backward_cuda(const at::Tensor& grad_out, const at::Tensor& ints, const at::Tensor& floats,
                             bool align_corners, bool compose_affine) {
  const char* op = "medistill::dsa_backward";
  dsa_check_args(op, "grad_out", grad_out, ints, floats);
  c10::cuda::CUDAGuard guard(grad_out.device());
  at::Tensor g = grad_out.contiguous();
  const at::Tensor ip = dsa_params_rows(ints, at::kInt);
  const at::Tensor fp = dsa_params_rows(floats, at::kFloat);
  at::Tensor gx = at::empty(g.sizes(), g.options());
  if (g.numel() == 0) return gx;
  const int64_t B = g.size(0);
  const ParamsView params = params_view(ip, fp);
  const Geometry geo = geometry_of(g, align_corners, compose_affine);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "dsa_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor scratch;  // float16/bfloat16: the scatter sums in float32 (no memset: the kernel zeroes it)
    acc_t* acc = nullptr;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      acc = gx.data_ptr<acc_t>();
    } else {
      scratch = at::empty(g.sizes(), g.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      acc = scratch.data_ptr<acc_t>();
    }
    dsa_backward_kernel<scalar_t, acc_t><<<per_sample_grid(B), kSampleThreads, 0, stream>>>(
        g.data_ptr<scalar_t>(), params, acc, gx.data_ptr<scalar_t>(), B, geo);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gx;
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CUDA, m) {
  m.impl("dsa", &medistill::dsa_cuda);
  m.impl("dsa_backward", &medistill::dsa_backward_cuda);
}
