// CPU kernel of dsa_sample: torch's CPU generator draws the uniforms, one loop maps them
// (dsa::sample_row). Matches the eager sampler in medistill/ops/dsa_params.py bit for bit
// (tests/test_dsa.py), so a seed gives the same params with or without the extension. The loop runs
// an AVX2+FMA copy where the CPU has one (simd/dispatch.h): there fmaf and floorf are single
// instructions instead of libm calls, with the same correctly rounded results.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/rand.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../common/dsa_checks.h"
#include "../common/dsa_math.h"
#include "simd/dispatch.h"

namespace medistill {
namespace {

struct SampleRows {
  const float *u, *offset, *span;
  const int32_t* token_bits;
  int64_t n_tokens, rows;
  bool pick_family;
  int32_t* ints;
  float* floats;
};

template <typename scalar_t>
MEDISTILL_ALWAYS_INLINE void sample_rows_impl(SampleRows a) {
  for (int64_t r = 0; r < a.rows; ++r)
    dsa::sample_row(a.u + r * dsa::kNumUniforms, a.u[0], a.offset, a.span, a.token_bits, a.n_tokens, a.pick_family,
                    a.ints + r * dsa::kNumInts, a.floats + r * dsa::kNumFloats);
}
MEDISTILL_X86_DISPATCH(sample_rows, sample_rows_impl)

std::tuple<at::Tensor, at::Tensor> dsa_sample_cpu(const at::Tensor& offset, const at::Tensor& span,
                                                  const at::Tensor& token_bits, int64_t rows, bool pick_family,
                                                  std::optional<at::Generator> generator) {
  dsa_sample_check_args(offset, span, token_bits, rows);
  const at::Tensor u = at::rand({rows, dsa::kNumUniforms}, generator, offset.options());
  at::Tensor ints = at::empty({rows, dsa::kNumInts}, offset.options().dtype(at::kInt));
  at::Tensor floats = at::empty({rows, dsa::kNumFloats}, offset.options());
  const at::Tensor o = offset.contiguous(), s = span.contiguous(), t = token_bits.contiguous();
  sample_rows<float>(SampleRows{u.data_ptr<float>(), o.data_ptr<float>(), s.data_ptr<float>(), t.data_ptr<int32_t>(),
                                 t.numel(), rows, pick_family, ints.data_ptr<int32_t>(), floats.data_ptr<float>()});
  return {ints, floats};
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, CPU, m) { m.impl("dsa_sample", &medistill::dsa_sample_cpu); }
