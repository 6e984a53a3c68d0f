// Schemas of the channel_normalize family: y[b,c,h,w] = (x[b,c,h,w] - mean[c]) / std[c].
// The smallest complete op in the package: it proves the build, the CPU/CUDA/fake kernels
// and the Python-registered autograd end to end.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(medistill, m) {
  m.def("channel_normalize(Tensor x, Tensor mean, Tensor std) -> Tensor");
  m.def("channel_normalize_backward(Tensor grad_out, Tensor std) -> Tensor");
}
