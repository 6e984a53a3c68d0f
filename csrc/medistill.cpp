// The one op namespace of medistill. Each op family adds its schemas with
// TORCH_LIBRARY_FRAGMENT in csrc/<op>.cpp; each backend registers its kernels at the bottom of
// csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu with TORCH_LIBRARY_IMPL.
#include <Python.h>
#include <torch/library.h>

#include "cpu/simd/config.h"

extern "C" {
// `import medistill._C` runs the static registrations below and in the other translation units.
// The module carries one attribute, CPU_SIMD: which CPU code this build runs on this machine
// (cpu/simd/config.h), for medistill.build_info().
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "medistill compiled ops (registered under torch.ops.medistill)", -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module != nullptr && PyModule_AddStringConstant(module, "CPU_SIMD", medistill::cpu_simd_path()) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
}

TORCH_LIBRARY(medistill, m) {
  // Schemas live with their op family (TORCH_LIBRARY_FRAGMENT); this block only claims the namespace.
}
