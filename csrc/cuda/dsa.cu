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

#include "../common/dsa_checks.h"
#include "dsa_kernels.cuh"
#include "launch.h"

namespace medistill {
namespace {

using dsa_kernels::dsa_backward_kernel;
using dsa_kernels::dsa_forward_kernel;
using dsa_kernels::Geometry;
using dsa_kernels::kSampleThreads;
using dsa_kernels::ParamsView;

unsigned int per_sample_grid(int64_t batch) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(batch, kMaxBlocks)));
}

// One call's checked, contiguous input, its params as the kernels read them, and a fresh output.
struct Call {
  at::Tensor input, ints, floats, out;
  ParamsView params;
  Geometry geo;
};

Call prepare(const char* op, const char* name, const at::Tensor& input, const at::Tensor& ints,
             const at::Tensor& floats, bool align_corners, bool compose_affine) {
  dsa_check_args(op, name, input, ints, floats);
  Call c;
  c.input = input.contiguous();
  c.ints = dsa_params_rows(ints, at::kInt);
  c.floats = dsa_params_rows(floats, at::kFloat);
  c.out = at::empty(c.input.sizes(), c.input.options());
  c.params = ParamsView{c.ints.data_ptr<int32_t>(), c.floats.data_ptr<float>(), c.ints.stride(0),
                        c.floats.stride(0), c.ints.size(0) == 1};
  c.geo = Geometry{c.input.size(1), c.input.size(2), c.input.size(3), align_corners, compose_affine};
  return c;
}

at::Tensor dsa_cuda(const at::Tensor& x, const at::Tensor& ints, const at::Tensor& floats, bool align_corners,
                    bool compose_affine) {
  c10::cuda::CUDAGuard guard(x.device());
  const Call c = prepare("medistill::dsa", "x", x, ints, floats, align_corners, compose_affine);
  if (c.input.numel() == 0) return c.out;
  const int64_t B = c.input.size(0);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.input.scalar_type(), "dsa_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dsa_forward_kernel<scalar_t, acc_t><<<per_sample_grid(B), kSampleThreads, 0, stream>>>(
        c.input.data_ptr<scalar_t>(), c.params, c.out.data_ptr<scalar_t>(), B, c.geo);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return c.out;
}

at::Tensor dsa_backward_cuda(const at::Tensor& grad_out, const at::Tensor& ints, const at::Tensor& floats,
                             bool align_corners, bool compose_affine) {
  c10::cuda::CUDAGuard guard(grad_out.device());
  const Call c = prepare("medistill::dsa_backward", "grad_out", grad_out, ints, floats, align_corners, compose_affine);
  if (c.input.numel() == 0) return c.out;
  const int64_t B = c.input.size(0);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.input.scalar_type(), "dsa_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor scratch;  // float16/bfloat16: the scatter sums in float32 (no memset: the kernel zeroes it)
    acc_t* acc = nullptr;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      acc = c.out.data_ptr<acc_t>();
    } else {
      scratch = at::empty(c.input.sizes(), c.input.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      acc = scratch.data_ptr<acc_t>();
    }
    dsa_backward_kernel<scalar_t, acc_t><<<per_sample_grid(B), kSampleThreads, 0, stream>>>(
        c.input.data_ptr<scalar_t>(), c.params, acc, c.out.data_ptr<scalar_t>(), B, c.geo);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return c.out;
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CUDA, m) {
  m.impl("dsa", &medistill::dsa_cuda);
  m.impl("dsa_backward", &medistill::dsa_backward_cuda);
}
