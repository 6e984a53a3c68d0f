// Autograd of dsa / dsa_backward in C++ (the Autograd dispatch key), so an eager call with grad
// costs no Python. DSA is affine in x: dsa(x) = A x + b (b: the brightness shift, moved by the
// geometry), and dsa_backward(g) = A^T g. So the gradient of dsa is dsa_backward, and the gradient
// of dsa_backward is A v = dsa(v) - dsa(0). Under create_graph each backward goes through the other
// op's autograd, so derivatives of any order are exact; a plain backward (grad mode off, nothing to
// record) calls the other op's kernel directly. The params (ints, floats) and the flags are constants.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/zeros_like.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace medistill {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using DSASignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool, bool);

// kAdjoint = false: dsa (A x + b); true: dsa_backward (A^T g).
template <bool kAdjoint>
at::Tensor call_op(const at::Tensor& x, const at::Tensor& ints, const at::Tensor& floats, bool align_corners,
                   bool compose_affine) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow(kAdjoint ? "medistill::dsa_backward" : "medistill::dsa", "")
                             .typed<DSASignature>();
  return op.call(x, ints, floats, align_corners, compose_affine);
}

template <bool kAdjoint>
class AffineDSA : public torch::autograd::Function<AffineDSA<kAdjoint>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& ints,
                            const at::Tensor& floats, bool align_corners, bool compose_affine) {
    ctx->save_for_backward({ints, floats});
    ctx->saved_data["align_corners"] = align_corners;
    ctx->saved_data["compose_affine"] = compose_affine;
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_op<kAdjoint>(x, ints, floats, align_corners, compose_affine);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& grad = grads[0];
    at::Tensor grad_x;
    if (grad.defined()) {
      const auto saved = ctx->get_saved_variables();
      const bool align_corners = ctx->saved_data["align_corners"].toBool();
      const bool compose_affine = ctx->saved_data["compose_affine"].toBool();
      if (at::GradMode::is_enabled()) {  // create_graph: through the other op's autograd, for the next order
        grad_x = AffineDSA<!kAdjoint>::apply(grad, saved[0], saved[1], align_corners, compose_affine);
      } else {  // a plain backward records nothing: the kernel directly
        at::AutoDispatchBelowADInplaceOrView guard;
        grad_x = call_op<!kAdjoint>(grad, saved[0], saved[1], align_corners, compose_affine);
      }
      if (kAdjoint) {  // A v = dsa(v) - dsa(0): drop the constant shift b
        at::Tensor shift;
        {
          at::NoGradGuard no_grad;
          shift = call_op<false>(at::zeros_like(grad), saved[0], saved[1], align_corners, compose_affine);
        }
        grad_x = grad_x.sub(shift);
      }
    }
    return {grad_x, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor dsa_autograd(const at::Tensor& x, const at::Tensor& ints, const at::Tensor& floats, bool align_corners,
                        bool compose_affine) {
  return AffineDSA<false>::apply(x, ints, floats, align_corners, compose_affine);
}

at::Tensor dsa_backward_autograd(const at::Tensor& grad_out, const at::Tensor& ints, const at::Tensor& floats,
                                 bool align_corners, bool compose_affine) {
  return AffineDSA<true>::apply(grad_out, ints, floats, align_corners, compose_affine);
}

}  // namespace
}  // namespace medistill

TORCH_LIBRARY_IMPL(medistill, Autograd, m) {
  m.impl("dsa", &medistill::dsa_autograd);
  m.impl("dsa_backward", &medistill::dsa_backward_autograd);
}
