// Argument checks of dsa / dsa_backward / dsa_sample and the params layout the kernels read, shared by the CPU
// and CUDA kernels; every failure names the op and the problem.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "checks.h"
#include "dsa_math.h"

namespace medistill {

// x (or grad_out, named `name`): (B, C, H, W) float; ints (P, 6) integer, floats (P, 6) float, on
// x's device, with P == 1 (a Siamese draw) or P == B. dtypes the device supports are checked by
// the kernel.
inline void dsa_check_args(const char* op, const char* name, const at::Tensor& x, const at::Tensor& ints,
                           const at::Tensor& floats) {
  MEDISTILL_CHECK_FLOAT(op, name, x);
  MEDISTILL_CHECK_DIM(op, name, x, 4);
  MEDISTILL_CHECK_DIM(op, "ints", ints, 2);
  MEDISTILL_CHECK_DIM(op, "floats", floats, 2);
  MEDISTILL_CHECK_SAME_DEVICE(op, x, ints);
  MEDISTILL_CHECK_SAME_DEVICE(op, x, floats);
  TORCH_CHECK(at::isIntegralType(ints.scalar_type(), /*includeBool=*/false), op,
              ": ints must be an integer tensor, got ", ints.scalar_type());
  MEDISTILL_CHECK_FLOAT(op, "floats", floats);
  TORCH_CHECK(ints.size(1) == dsa::kNumInts && floats.size(1) == dsa::kNumFloats, op, ": params must be (P, ",
              dsa::kNumInts, ") ints and (P, ", dsa::kNumFloats, ") floats, got ", ints.sizes(), " and ",
              floats.sizes());
  TORCH_CHECK(ints.size(0) == floats.size(0), op, ": ints and floats disagree on the params batch size (",
              ints.size(0), " vs ", floats.size(0), ")");
  TORCH_CHECK(ints.size(0) == 1 || ints.size(0) == x.size(0), op, ": params batch size ", ints.size(0),
              " must be 1 (a Siamese draw) or match the batch size of ", name, " (", x.size(0), ")");
}

// Params as `dtype` with unit column stride; rows may have any stride (a view, or 0 when expanded).
inline at::Tensor dsa_params_rows(const at::Tensor& t, at::ScalarType dtype) {
  at::Tensor r = t.to(dtype);
  return r.stride(1) == 1 ? r : r.contiguous();
}

// dsa_sample's constants: offset, span (kNumUniforms,) float32 and token_bits (n,) int32, n >= 1, on
// one device; rows >= 0.
inline void dsa_sample_check_args(const at::Tensor& offset, const at::Tensor& span, const at::Tensor& token_bits,
                                  int64_t rows) {
  const char* op = "medistill::dsa_sample";
  TORCH_CHECK(rows >= 0, op, ": rows must be non-negative, got ", rows);
  TORCH_CHECK(offset.scalar_type() == at::kFloat && span.scalar_type() == at::kFloat, op,
              ": offset and span must be float32");
  TORCH_CHECK(offset.dim() == 1 && offset.size(0) == dsa::kNumUniforms && span.dim() == 1 &&
                  span.size(0) == dsa::kNumUniforms,
              op, ": offset and span must be (", dsa::kNumUniforms, ",), got ", offset.sizes(), " and ", span.sizes());
  TORCH_CHECK(token_bits.scalar_type() == at::kInt && token_bits.dim() == 1 && token_bits.numel() >= 1, op,
              ": token_bits must be a non-empty (n,) int32 tensor, got ", token_bits.scalar_type(), " ",
              token_bits.sizes());
  MEDISTILL_CHECK_SAME_DEVICE(op, offset, span);
  MEDISTILL_CHECK_SAME_DEVICE(op, offset, token_bits);
}

}  // namespace medistill
