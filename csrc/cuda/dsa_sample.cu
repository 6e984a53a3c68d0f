// CUDA kernel of dsa_sample: torch's CUDA generator (Philox) draws the uniforms on the device, one
// launch maps them (dsa::sample_row). Two launches, no host synchronisation: capturable in a CUDA
// graph (register the generator with the graph when it is not the default one).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/rand.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../common/dsa_checks.h"
#include "../common/dsa_math.h"
#include "launch.h"

namespace medistill {
namespace {

__global__ void dsa_sample_kernel(const float* __restrict__ u, const float* __restrict__ offset,
                                  const float* __restrict__ span, const int32_t* __restrict__ token_bits,
                                  int64_t n_tokens, bool pick_family, int64_t rows, int32_t* __restrict__ ints,
                                  float* __restrict__ floats) {
  MEDISTILL_GRID_STRIDE_LOOP(r, rows) {
    dsa::sample_row(u + r * dsa::kNumUniforms, u[0], offset, span, token_bits, n_tokens, pick_family,
                    ints + r * dsa::kNumInts, floats + r * dsa::kNumFloats);
  }
}

std::tuple<at::Tensor, at::Tensor> dsa_sample_cuda(const at::Tensor& offset, const at::Tensor& span,
                                                   const at::Tensor& token_bits, int64_t rows, bool pick_family,
                                                   std::optional<at::Generator> generator) {
  dsa_sample_check_args(offset, span, token_bits, rows);
  c10::cuda::CUDAGuard guard(offset.device());
  const at::Tensor u = at::rand({rows, dsa::kNumUniforms}, generator, offset.options());
  at::Tensor ints = at::empty({rows, dsa::kNumInts}, offset.options().dtype(at::kInt));
  at::Tensor floats = at::empty({rows, dsa::kNumFloats}, offset.options());
  if (rows == 0) return {ints, floats};
  const at::Tensor o = offset.contiguous(), s = span.contiguous(), t = token_bits.contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  dsa_sample_kernel<<<grid_for(rows), kThreadsPerBlock, 0, stream>>>(
      u.data_ptr<float>(), o.data_ptr<float>(), s.data_ptr<float>(), t.data_ptr<int32_t>(), t.numel(), pick_family,
      rows, ints.data_ptr<int32_t>(), floats.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {ints, floats};
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CUDA, m) { m.impl("dsa_sample", &medistill::dsa_sample_cuda); }
