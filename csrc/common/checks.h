// Argument checks shared by every backend; each failure names the op and the problem.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#define MEDISTILL_CHECK_FLOAT(op, name, t)                                                    \
  TORCH_CHECK(at::isFloatingType((t).scalar_type()), op, ": ", name,                          \
              " must be a floating-point tensor, got ", (t).scalar_type())

#define MEDISTILL_CHECK_DIM(op, name, t, d)                                                   \
  TORCH_CHECK((t).dim() == (d), op, ": ", name, " must have ", d, " dimensions, got shape ", \
              (t).sizes())

#define MEDISTILL_CHECK_SAME_DEVICE(op, a, b)                                                 \
  TORCH_CHECK((a).device() == (b).device(), op, ": tensors must be on one device, got ",     \
              (a).device(), " and ", (b).device())
