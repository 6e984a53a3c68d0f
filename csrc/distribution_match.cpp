// Schemas of the distribution_match family (DM's per-class mean-embedding loss, all classes at once).
//   emb_real (Nr, D), y_real (Nr,) int64; emb_syn (Ns, D), y_syn (Ns,) int64; labels in [0, K).
//   Returns loss (0-dim, embeddings' dtype), class_diff (K, D) float64 = mean_real - mean_syn
//   (0 for a class missing on either side: it is skipped) and class_counts (K, 2) int64.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(medistill, m) {
  m.def(
      "distribution_match(Tensor emb_real, Tensor y_real, Tensor emb_syn, Tensor y_syn, int num_classes) "
      "-> (Tensor, Tensor, Tensor)");
  // Gradient (N, D) w.r.t. one side's embeddings (side 0: real with labels y, 1: synthetic), in
  // grad_loss's dtype (the embeddings' dtype).
  m.def(
      "distribution_match_backward(Tensor grad_loss, Tensor class_diff, Tensor class_counts, Tensor y, "
      "int side) -> Tensor");
}
