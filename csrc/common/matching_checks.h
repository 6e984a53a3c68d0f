// Argument checks of the matching losses (gradient_match, distribution_match, trajectory_match),
// shared by the CPU and CUDA kernels; every failure names the op and the problem.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <string>
#include <vector>

#include "checks.h"
#include "gradient_match_math.h"

namespace medistill {

inline int gm_parse_metric(const char* op, c10::string_view metric) {
  if (metric == "ours") return kGMOurs;
  if (metric == "mse") return kGMMse;
  if (metric == "cos") return kGMCos;
  TORCH_CHECK(false, op, ": metric must be 'ours', 'mse' or 'cos', got '", std::string(metric), "'");
  return -1;
}

// Checks a (grads_real, grads_syn) pair of gradient lists and returns the per-class shapes (each
// tensor's shape without its leading class dim when batched, the whole shape otherwise).
inline std::vector<std::vector<int64_t>> gm_check_lists(const char* op, at::TensorList real, at::TensorList syn,
                                                        bool batched) {
  TORCH_CHECK(real.size() == syn.size(), op, ": grads_real and grads_syn must have the same length, got ",
              real.size(), " and ", syn.size());
  TORCH_CHECK(!real.empty(), op, ": the gradient lists are empty");
  const at::Tensor& first = syn[0];
  MEDISTILL_CHECK_FLOAT(op, "grads_syn[0]", first);
  TORCH_CHECK(!batched || first.dim() >= 1, op, ": batched gradients need a leading class dim, grads_syn[0] is 0-dim");
  const int64_t classes = batched ? first.size(0) : 1;
  std::vector<std::vector<int64_t>> shapes;
  shapes.reserve(real.size());
  for (size_t i = 0; i < real.size(); ++i) {
    const at::Tensor& r = real[i];
    const at::Tensor& s = syn[i];
    TORCH_CHECK(r.sizes() == s.sizes(), op, ": grads_real[", i, "] and grads_syn[", i,
                "] differ in shape: ", r.sizes(), " vs ", s.sizes());
    TORCH_CHECK(r.scalar_type() == first.scalar_type() && s.scalar_type() == first.scalar_type(), op,
                ": all gradients must share one dtype, got ", first.scalar_type(), " and ",
                (r.scalar_type() != first.scalar_type() ? r.scalar_type() : s.scalar_type()), " at index ", i);
    TORCH_CHECK(r.device() == first.device() && s.device() == first.device(), op,
                ": all gradients must be on one device, got ", first.device(), " and ",
                (r.device() != first.device() ? r.device() : s.device()), " at index ", i);
    if (batched) {
      TORCH_CHECK(s.dim() >= 1 && s.size(0) == classes, op,
                  ": every gradient needs the same leading class dim (", classes, "), index ", i, " has shape ",
                  s.sizes());
      shapes.emplace_back(s.sizes().begin() + 1, s.sizes().end());
    } else {
      shapes.emplace_back(s.sizes().begin(), s.sizes().end());
    }
  }
  return shapes;
}

// Number of classes of a checked gradient list.
inline int64_t gm_classes(at::TensorList syn, bool batched) { return batched ? syn[0].size(0) : 1; }

// Loss shape: (K,) when batched, () otherwise.
inline std::vector<int64_t> gm_loss_shape(int64_t classes, bool batched) {
  return batched ? std::vector<int64_t>{classes} : std::vector<int64_t>{};
}

inline void dm_check_side(const char* op, const char* emb_name, const at::Tensor& emb, const char* y_name,
                          const at::Tensor& y) {
  MEDISTILL_CHECK_FLOAT(op, emb_name, emb);
  MEDISTILL_CHECK_DIM(op, emb_name, emb, 2);
  MEDISTILL_CHECK_DIM(op, y_name, y, 1);
  TORCH_CHECK(y.scalar_type() == at::kLong, op, ": ", y_name, " must be int64 class labels, got ", y.scalar_type());
  TORCH_CHECK(y.size(0) == emb.size(0), op, ": ", y_name, " has ", y.size(0), " labels for ", emb.size(0),
              " rows of ", emb_name);
  MEDISTILL_CHECK_SAME_DEVICE(op, emb, y);
}

inline void dm_check_args(const char* op, const at::Tensor& emb_real, const at::Tensor& y_real,
                          const at::Tensor& emb_syn, const at::Tensor& y_syn, int64_t num_classes) {
  dm_check_side(op, "emb_real", emb_real, "y_real", y_real);
  dm_check_side(op, "emb_syn", emb_syn, "y_syn", y_syn);
  TORCH_CHECK(emb_real.size(1) == emb_syn.size(1), op, ": emb_real and emb_syn differ in embedding size: ",
              emb_real.size(1), " vs ", emb_syn.size(1));
  TORCH_CHECK(emb_real.scalar_type() == emb_syn.scalar_type(), op, ": emb_real and emb_syn differ in dtype: ",
              emb_real.scalar_type(), " vs ", emb_syn.scalar_type());
  MEDISTILL_CHECK_SAME_DEVICE(op, emb_real, emb_syn);
  TORCH_CHECK(num_classes >= 1, op, ": num_classes must be >= 1, got ", num_classes);
}

inline void tm_check_args(const char* op, const at::Tensor& w_student, const at::Tensor& w_target,
                          const at::Tensor& w_start) {
  MEDISTILL_CHECK_FLOAT(op, "w_student", w_student);
  MEDISTILL_CHECK_DIM(op, "w_student", w_student, 1);
  TORCH_CHECK(w_target.sizes() == w_student.sizes() && w_start.sizes() == w_student.sizes(), op,
              ": w_student, w_target and w_start must be flat vectors of one length, got shapes ",
              w_student.sizes(), ", ", w_target.sizes(), " and ", w_start.sizes());
  TORCH_CHECK(w_target.scalar_type() == w_student.scalar_type() && w_start.scalar_type() == w_student.scalar_type(),
              op, ": w_student, w_target and w_start must share one dtype, got ", w_student.scalar_type(), ", ",
              w_target.scalar_type(), " and ", w_start.scalar_type());
  MEDISTILL_CHECK_SAME_DEVICE(op, w_student, w_target);
  MEDISTILL_CHECK_SAME_DEVICE(op, w_student, w_start);
}

}  // namespace medistill
