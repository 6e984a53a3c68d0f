// CUDA host side of dsa: argument checks, allocation and the launches of the kernels in
// dsa_kernels.cuh (one forward, one backward; no memset, no host synchronisation).
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
#include "dsa_kernels.cuh"
#include "launch.h"

namespace medistill {
namespace {

using dsa_kernels::dsa_backward_kernel;
using dsa_kernels::dsa_forward_kernel;
using dsa_kernels::Geometry;
using dsa_kernels::kSampleThreads;
using dsa_kernels::ParamsView;

ParamsView params_view(const at::Tensor& ip, const at::Tensor& fp) {
  return ParamsView{ip.data_ptr<int32_t>(), fp.data_ptr<float>(), ip.stride(0), fp.stride(0), ip.size(0) == 1};
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
