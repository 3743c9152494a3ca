"""The Jupyter kernels Sophia installs: "Sophia (CPU)" everywhere, "Sophia (GPU)" where cuDF imports.

The GPU kernel runs ``python -m cudf.pandas -m ipykernel_launcher``: the same pandas code, accelerated
by cuDF, falling back to pandas for anything cuDF does not cover. Both use this Python (the one
Sophia is installed in), so ``sophia_lib`` imports in either.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CPU_KERNEL = "sophia-cpu"
GPU_KERNEL = "sophia-gpu"


@dataclass(frozen=True)
class KernelInstall:
    name: str
    display_name: str
    path: str


def cudf_imports(python: str = sys.executable, timeout_s: float = 180) -> bool:
    """Whether ``import cudf`` works in ``python`` (it needs a GPU and a matching CUDA, not just the package)."""
    try:
        done = subprocess.run([python, "-c", "import cudf"], capture_output=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def kernel_spec(gpu: bool, python: str = sys.executable) -> dict:
    launcher = ["-m", "cudf.pandas", "-m", "ipykernel_launcher"] if gpu else ["-m", "ipykernel_launcher"]
    return {
        "argv": [python, *launcher, "-f", "{connection_file}"],
        "display_name": "Sophia (GPU)" if gpu else "Sophia (CPU)",
        "language": "python",
        "env": {} if gpu else {"SOPHIA_ENGINE": "pandas"},
        "metadata": {"debugger": True, "sophia": {"engine": "cudf.pandas" if gpu else "pandas"}},
    }


def install_kernels(prefix: str | None = None, gpu: bool | None = None) -> list[KernelInstall]:
    """Install (or refresh) the Sophia kernels under ``prefix`` (default: this environment).

    ``gpu`` None: install the GPU kernel only where cuDF imports, and remove a stale one elsewhere.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    prefix = prefix or sys.prefix
    gpu = cudf_imports() if gpu is None else gpu
    manager = KernelSpecManager()
    installed = []
    for name, on_gpu in ((CPU_KERNEL, False), (GPU_KERNEL, True)):
        if on_gpu and not gpu:
            stale = Path(prefix) / "share" / "jupyter" / "kernels" / name
            if stale.is_dir():  # a GPU kernel that cannot start here would only fail later
                shutil.rmtree(stale)
            continue
        spec = kernel_spec(on_gpu)
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "kernel.json").write_text(json.dumps(spec, indent=1))
            path = manager.install_kernel_spec(folder, kernel_name=name, prefix=prefix)
        installed.append(KernelInstall(name, spec["display_name"], path))
    return installed


def installed_kernels() -> dict[str, str]:
    """Kernel name → folder of the kernels Jupyter can see now."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager().find_kernel_specs()
