// csrc/cuda/dsa_kernels.cuh compiled for the host with the builtins of host_cuda_builtins.h: a
// module with forward(x, ints, floats, align_corners, compose_affine, blocks) and backward(...),
// the same launches as csrc/cuda/dsa.cu (float32, float64; float16 with a float32 accumulator)
// with `blocks` blocks striding over the batch. The outputs and the float16 scratch start as
// garbage, as fresh GPU memory would, so a kernel that forgot to write or zero them fails.
#include <torch/extension.h>

#include <algorithm>
#include <type_traits>

#include "host_cuda_builtins.h"
#include "cuda/dsa_kernels.cuh"

namespace {

using medistill::dsa_kernels::Geometry;
using medistill::dsa_kernels::kSampleThreads;
using medistill::dsa_kernels::ParamsView;

constexpr double kGarbage = 12345.0;

ParamsView params_view(const at::Tensor& ints, const at::Tensor& floats) {
  return ParamsView{ints.data_ptr<int32_t>(), floats.data_ptr<float>(), ints.stride(0), floats.stride(0),
                    ints.size(0) == 1};
}

template <typename scalar_t, typename acc_t>
at::Tensor forward_as(const at::Tensor& x, const at::Tensor& ints, const at::Tensor& floats, bool align, bool compose,
                      int64_t blocks) {
  at::Tensor out = at::full_like(x, kGarbage);
  const ParamsView params = params_view(ints, floats);
  const Geometry geo{x.size(1), x.size(2), x.size(3), align, compose};
  host_cuda::launch(static_cast<unsigned int>(blocks), kSampleThreads, [&] {
    medistill::dsa_kernels::dsa_forward_kernel<scalar_t, acc_t>(x.data_ptr<scalar_t>(), params,
                                                               out.data_ptr<scalar_t>(), x.size(0), geo);
  });
  return out;
}

template <typename scalar_t, typename acc_t>
at::Tensor backward_as(const at::Tensor& g, const at::Tensor& ints, const at::Tensor& floats, bool align, bool compose,
                       int64_t blocks) {
  at::Tensor gx = at::full_like(g, kGarbage);
  at::Tensor scratch;
  acc_t* acc = nullptr;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    acc = gx.data_ptr<acc_t>();
  } else {
    scratch = at::full(g.sizes(), kGarbage, g.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    acc = scratch.data_ptr<acc_t>();
  }
  const ParamsView params = params_view(ints, floats);
  const Geometry geo{g.size(1), g.size(2), g.size(3), align, compose};
  host_cuda::launch(static_cast<unsigned int>(blocks), kSampleThreads, [&] {
    medistill::dsa_kernels::dsa_backward_kernel<scalar_t, acc_t>(g.data_ptr<scalar_t>(), params, acc,
                                                                gx.data_ptr<scalar_t>(), g.size(0), geo);
  });
  return gx;
}

template <bool kBackward>
at::Tensor run(at::Tensor t, at::Tensor ints, at::Tensor floats, bool align, bool compose, int64_t blocks) {
  TORCH_CHECK(t.dim() == 4 && ints.scalar_type() == at::kInt && floats.scalar_type() == at::kFloat,
              "dsa_kernels_on_host: (B, C, H, W) input, int32 ints, float32 floats");
  t = t.contiguous();
  ints = ints.contiguous();
  floats = floats.contiguous();
  switch (t.scalar_type()) {
    case at::kFloat:
      return kBackward ? backward_as<float, float>(t, ints, floats, align, compose, blocks)
                       : forward_as<float, float>(t, ints, floats, align, compose, blocks);
    case at::kDouble:
      return kBackward ? backward_as<double, double>(t, ints, floats, align, compose, blocks)
                       : forward_as<double, double>(t, ints, floats, align, compose, blocks);
    case at::kHalf:
      return kBackward ? backward_as<c10::Half, float>(t, ints, floats, align, compose, blocks)
                       : forward_as<c10::Half, float>(t, ints, floats, align, compose, blocks);
    default:
      TORCH_CHECK(false, "dsa_kernels_on_host: float32, float64 or float16, got ", t.scalar_type());
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &run<false>, "dsa_forward_kernel on the host");
  m.def("backward", &run<true>, "dsa_backward_kernel on the host");
}
