"""Build medistill and its one compiled extension, ``medistill._C``.

Build knobs (each build prints what it decided, as ``[medistill build]`` lines):
  MEDISTILL_EXT=1|0        1 (default): compile medistill._C. 0: install without compiling anything (no
                           compiler, no torch at build time): every op runs its pure-PyTorch reference,
                           and `medistill info` / medistill.build_info() say so and why.
  MEDISTILL_SIMD=auto|off  auto (default): on x86-64 with GCC or clang, compile the AVX2+FMA and SSE code
                           (AVX2 chosen per CPU at run time); on other targets the portable path.
                           off: the portable path on every target (what aarch64 builds; on x86 this is
                           how scripts/test_portable.sh tests it).
  MEDISTILL_CUDA=auto|0|1  auto (default): compile the CUDA kernels when torch is a CUDA build and
                           nvcc is found; 0: CPU only; 1: CUDA required (fails with the reason).
  TORCH_CUDA_ARCH_LIST     GPU architectures to compile for (default "8.0;9.0+PTX": Ampere and Hopper
                           binaries, plus PTX for 9.0 that the driver compiles for newer GPUs).
  CUDA_HOME                CUDA toolkit root (default /usr/local/cuda when it holds bin/nvcc).
  CXX                      C++ compiler (torch's default: c++). OpenMP is used where it compiles
                           (probed); without it the kernels run on one thread.
  MAX_JOBS                 parallel compile jobs (ninja).

Install: ``pip install -r requirements.txt && pip install --no-build-isolation --no-deps -e .``
Without compiling: ``MEDISTILL_EXT=0 pip install --no-build-isolation .``
Packages: ``python -m build --sdist --wheel --no-isolation`` (the sdist carries csrc/ and its headers).
"""
import glob
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"
# setup.py commands that compile (or install) the package; the others (sdist, egg_info, dist_info)
# only need its metadata, so they neither import torch nor probe a compiler.
BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "bdist", "bdist_egg", "install", "develop", "editable_wheel"}


def say(message):
    print(f"[medistill build] {message}", file=sys.stderr, flush=True)


def knob(name, default, allowed):
    value = os.environ.get(name, default).strip().lower()
    if value not in allowed:
        raise SystemExit(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def locate_cuda_home():
    """The CUDA toolkit root holding bin/nvcc, or None. Checks paths only; runs nothing."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for root in candidates:
        if root and os.path.exists(os.path.join(root, "bin", "nvcc")):
            return root
    return None


def decide_cuda(torch):
    """(build_cuda, reason) from MEDISTILL_CUDA, the torch build and the toolkit on disk."""
    switch = knob("MEDISTILL_CUDA", "auto", ("auto", "0", "1"))
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


def decide_simd():
    """(compile flags, description) from MEDISTILL_SIMD and the target (csrc/cpu/simd/config.h decides in C++)."""
    switch = knob("MEDISTILL_SIMD", "auto", ("auto", "off"))
    if switch == "off":
        return ["-DMEDISTILL_SIMD_OFF"], "MEDISTILL_SIMD=off: portable path (no x86 SIMD code compiled)"
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and sys.platform != "win32":
        return [], "MEDISTILL_SIMD=auto: x86-64 AVX2+FMA and SSE code (AVX2 chosen per CPU at run time)"
    return [], f"MEDISTILL_SIMD=auto: portable path (no x86 SIMD code for {machine or 'this target'})"


def probe_openmp(torch):
    """(compile flags, link flags, description): OpenMP where the C++ compiler has it.

    at::parallel_for, which the CPU kernels use, is inlined from torch's headers; with an OpenMP
    torch it parallelises only when the extension is compiled with OpenMP, and otherwise runs on one
    thread (correct, not parallel). The probe compiles and links a small OpenMP library with the
    compiler torch's build uses.
    """
    if sys.platform == "win32":
        return [], [], "OFF: not set up for MSVC (the kernels run on one thread)"
    if not torch.backends.openmp.is_available():
        return [], [], f"not needed: torch {torch.__version__} does not parallelise with OpenMP"
    from torch.utils.cpp_extension import get_cxx_compiler

    cxx = get_cxx_compiler()
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":  # Apple clang: no -fopenmp driver flag; torch ships libomp
        torch_dir = os.path.dirname(torch.__file__)
        candidates.append((["-Xpreprocessor", "-fopenmp", "-I" + os.path.join(torch_dir, "include")],
                           ["-L" + os.path.join(torch_dir, "lib"), "-lomp"]))
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cpp")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint medistill_probe() {\n  int n = 0;\n"
                    "#pragma omp parallel reduction(+ : n)\n  n += omp_get_num_threads();\n  return n;\n}\n")
        for cflags, lflags in candidates:
            cmd = [cxx, *cflags, "-fPIC", "-shared", src, "-o", os.path.join(tmp, "probe.so"), *lflags]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{' '.join(cflags)}: {exc}")
                continue
            if out.returncode == 0:
                return cflags, lflags, f"{' '.join(cflags)} (with {cxx})"
            first = (out.stderr.strip().splitlines() or ["failed"])[0]
            errors.append(f"{' '.join(cflags)}: {first}")
    return [], [], (f"OFF: {cxx} cannot build OpenMP code ({'; '.join(errors)}); the CPU kernels will run on one "
                    "thread. Set CXX to a compiler with OpenMP (e.g. GCC, or LLVM clang with libomp) to parallelise them")


def optimization_flags():
    """-O3, unless Python's own compile flags (which setuptools passes first) already carry it."""
    if sys.platform == "win32":
        return ["/O2"]
    inherited = (sysconfig.get_config_var("CFLAGS") or "").split() + (sysconfig.get_config_var("OPT") or "").split()
    return [] if "-O3" in inherited else ["-O3"]


def write_build_config(**record):
    """Record what this build was made against and decided, for medistill.build_info()."""
    path = os.path.join(HERE, "medistill", "_build_config.py")
    with open(path, "w") as f:
        f.write("# Written by setup.py at build time; not tracked by git.\n")
        for key, value in record.items():
            f.write(f"{key} = {value!r}\n")


def without_extension():
    """MEDISTILL_EXT=0: a pure-Python install (torch is not even imported), recorded as such."""
    say("MEDISTILL_EXT=0: medistill._C is not built; every op will run its pure-PyTorch reference")
    write_build_config(
        EXTENSION_BUILT=False, EXTENSION_DECISION="installed with MEDISTILL_EXT=0, nothing compiled",
        TORCH_VERSION=None, TORCH_CUDA_VERSION=None,
        CUDA_KERNELS_COMPILED=False, CUDA_DECISION="MEDISTILL_EXT=0: no compiled extension",
        TORCH_CUDA_ARCH_LIST=None, CPU_SIMD=None, OPENMP=None,
    )
    return []


def extension_modules():
    if knob("MEDISTILL_EXT", "1", ("0", "1")) == "0":
        return without_extension()
    import torch

    build_cuda, reason = decide_cuda(torch)
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    simd_flags, simd = decide_simd()
    omp_cflags, omp_lflags, openmp = probe_openmp(torch)
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cxx_flags = optimization_flags() + simd_flags + omp_cflags
    say(f"torch {torch.__version__}; CUDA kernels: {'ON' if build_cuda else 'OFF'} ({reason})")
    say(f"CPU SIMD: {simd}")
    say(f"OpenMP: {openmp}")
    if build_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        extra = {"cxx": cxx_flags + ["-DWITH_CUDA"], "nvcc": ["-O3", "--expt-relaxed-constexpr", "-DWITH_CUDA"]}
        say(f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}  MAX_JOBS={os.environ.get('MAX_JOBS', 'auto')}")
        make = CUDAExtension
    else:
        extra = {"cxx": cxx_flags}
        say(f"MAX_JOBS={os.environ.get('MAX_JOBS', 'auto')}")
        make = CppExtension
    write_build_config(
        EXTENSION_BUILT=True, EXTENSION_DECISION="MEDISTILL_EXT=1",
        TORCH_VERSION=torch.__version__, TORCH_CUDA_VERSION=torch.version.cuda,
        CUDA_KERNELS_COMPILED=build_cuda, CUDA_DECISION=reason,
        TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST") if build_cuda else None,
        CPU_SIMD=simd, OPENMP=openmp,
    )
    return [make("medistill._C", sources, extra_compile_args=extra, extra_link_args=omp_lflags)]


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(no_python_abi_suffix=False)


if __name__ == "__main__":
    ext_modules, cmdclass = [], {}
    if any(arg in BUILD_COMMANDS for arg in sys.argv[1:]):
        ext_modules = extension_modules()
        if ext_modules:
            cmdclass = {"build_ext": build_ext_class()}
    setup(
        packages=find_packages(include=["medistill", "medistill.*"]),
        ext_modules=ext_modules,
        cmdclass=cmdclass,
    )
