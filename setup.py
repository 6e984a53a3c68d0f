"""Build medistill and its one compiled extension, ``medistill._C``.

Build knobs (all printed at build time):
  MEDISTILL_CUDA=auto|0|1  auto (default): compile the CUDA kernels when torch is a CUDA build and
                           nvcc is found; 0: CPU only; 1: CUDA required (fails with the reason).
  TORCH_CUDA_ARCH_LIST     GPU architectures to compile for (default "8.0;9.0": Ampere and Hopper).
  CUDA_HOME                CUDA toolkit root (default /usr/local/cuda when it holds bin/nvcc).
  MAX_JOBS                 parallel compile jobs (ninja).

Install: ``pip install -r requirements.txt && pip install --no-build-isolation --no-deps -e .``
"""
import glob
import os
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;9.0"


def say(message):
    print(f"[medistill build] {message}", file=sys.stderr, flush=True)


def locate_cuda_home():
    """The CUDA toolkit root holding bin/nvcc, or None. Checks paths only; runs nothing."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for root in candidates:
        if root and os.path.exists(os.path.join(root, "bin", "nvcc")):
            return root
    return None


def decide_cuda(torch):
    """(build_cuda, reason) from MEDISTILL_CUDA, the torch build and the toolkit on disk."""
    switch = os.environ.get("MEDISTILL_CUDA", "auto").strip().lower()
    if switch not in ("auto", "0", "1"):
        raise SystemExit(f"MEDISTILL_CUDA must be auto, 0 or 1, got {switch!r}")
    if switch == "0":
        return False, "MEDISTILL_CUDA=0"
    problems = []
    if torch.version.cuda is None:
        problems.append(f"torch {torch.__version__} is not a CUDA build")
    cuda_home = locate_cuda_home()
    if cuda_home is None:
        problems.append("no nvcc found (set CUDA_HOME to the toolkit root)")
    if problems:
        if switch == "1":
            raise SystemExit("MEDISTILL_CUDA=1 but CUDA kernels cannot be built: " + "; ".join(problems))
        return False, "; ".join(problems)
    # torch.utils.cpp_extension reads CUDA_HOME when imported: set it first.
    os.environ["CUDA_HOME"] = cuda_home
    # With no GPU visible, torch's architecture detection fails: default the list.
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
    return True, f"torch CUDA {torch.version.cuda}, nvcc in {cuda_home}"


def write_build_config(torch, build_cuda, reason):
    """Record what this build was made against, for medistill.build_info()."""
    path = os.path.join(HERE, "medistill", "_build_config.py")
    with open(path, "w") as f:
        f.write("# Written by setup.py at build time; not tracked by git.\n")
        f.write(f"TORCH_VERSION = {torch.__version__!r}\n")
        f.write(f"TORCH_CUDA_VERSION = {torch.version.cuda!r}\n")
        f.write(f"CUDA_KERNELS_COMPILED = {build_cuda!r}\n")
        f.write(f"CUDA_DECISION = {reason!r}\n")
        f.write(f"TORCH_CUDA_ARCH_LIST = {os.environ.get('TORCH_CUDA_ARCH_LIST') if build_cuda else None!r}\n")


def extension_modules():
    import torch

    build_cuda, reason = decide_cuda(torch)
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cxx_flags = ["-O3", "-fopenmp" if sys.platform.startswith("linux") else "-O3"]
    extra = {"cxx": cxx_flags}
    say(f"torch {torch.__version__}; CUDA kernels: {'ON' if build_cuda else 'OFF'} ({reason})")
    if build_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr", "-DWITH_CUDA"]
        extra["cxx"] = cxx_flags + ["-DWITH_CUDA"]
        say(f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}  MAX_JOBS={os.environ.get('MAX_JOBS', 'auto')}")
        make = CUDAExtension
    else:
        make = CppExtension
    write_build_config(torch, build_cuda, reason)
    return [make("medistill._C", sources, extra_compile_args=extra, extra_link_args=["-fopenmp"])]


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(no_python_abi_suffix=False)


if __name__ == "__main__":
    setup(
        packages=find_packages(include=["medistill", "medistill.*"]),
        ext_modules=extension_modules(),
        cmdclass={"build_ext": build_ext_class()},
    )
