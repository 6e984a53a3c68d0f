// CPU kernel of dsa_sample: torch's CPU generator draws the uniforms, one loop maps them
// (dsa::sample_row). Matches the eager sampler in medistill/ops/dsa_params.py bit for bit
// (tests/test_dsa.py), so a seed gives the same params with or without the extension.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/rand.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../common/dsa_checks.h"
#include "../common/dsa_math.h"

namespace medistill {
namespace {

std::tuple<at::Tensor, at::Tensor> dsa_sample_cpu(const at::Tensor& offset, const at::Tensor& span,
                                                  const at::Tensor& token_bits, int64_t rows, bool pick_family,
                                                  std::optional<at::Generator> generator) {
  dsa_sample_check_args(offset, span, token_bits, rows);
  const at::Tensor u = at::rand({rows, dsa::kNumUniforms}, generator, offset.options());
  at::Tensor ints = at::empty({rows, dsa::kNumInts}, offset.options().dtype(at::kInt));
  at::Tensor floats = at::empty({rows, dsa::kNumFloats}, offset.options());
  const at::Tensor o = offset.contiguous(), s = span.contiguous(), t = token_bits.contiguous();
  const float *up = u.data_ptr<float>(), *op = o.data_ptr<float>(), *sp = s.data_ptr<float>();
  const int32_t* tp = t.data_ptr<int32_t>();
  int32_t* ip = ints.data_ptr<int32_t>();
  float* fp = floats.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r)
    dsa::sample_row(up + r * dsa::kNumUniforms, up[0], op, sp, tp, t.numel(), pick_family, ip + r * dsa::kNumInts,
                    fp + r * dsa::kNumFloats);
  return {ints, floats};
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CPU, m) { m.impl("dsa_sample", &medistill::dsa_sample_cpu); }
