// The one op namespace of medistill. Each op family adds its schemas with
// TORCH_LIBRARY_FRAGMENT in csrc/<op>.cpp; each backend registers its kernels at the bottom of
// csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu with TORCH_LIBRARY_IMPL.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import medistill._C` runs the static registrations below and in the other translation units.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "medistill compiled ops (registered under torch.ops.medistill)", -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(medistill, m) {
  // Schemas live with their op family (TORCH_LIBRARY_FRAGMENT); this block only claims the namespace.
}
