"""What this machine has, read without loading a model: the NVIDIA GPUs its driver lists (whether or not torch can
use them), what the installed torch was built for, the Apple chip, and the memory free on a device.

Facts only: `bioqa.devices` decides on them, `bioqa-doctor` shows them. Each probe answers None or an empty list
where the machine has nothing to say (no driver, not a Mac), never raises.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

NVIDIA_PROC = Path("/proc/driver/nvidia/version")  # the kernel module's own record, present with a loaded driver
# The driver's device files: a container without GPU access still sees the host's /proc record, but not these.
NVIDIA_DEVICES = (Path("/dev/nvidiactl"), Path("/dev/nvidia0"))
# The oldest driver branch each CUDA major version runs on (NVIDIA's CUDA toolkit release notes, table 3).
MIN_DRIVER = {13: 580, 12: 525, 11: 450}


@dataclass(frozen=True)
class NvidiaGpu:
    name: str
    driver: str | None  # "580.65.06"
    memory_mb: int | None
    capability: str | None  # "8.6" (nvidia-smi of drivers before R510 does not say)


def nvidia_gpus(timeout: float = 10.0) -> list[NvidiaGpu]:
    """The GPUs the NVIDIA driver lists (`nvidia-smi`), as the driver sees them, whatever torch makes of them."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    for fields in ("name,driver_version,memory.total,compute_cap", "name,driver_version,memory.total"):
        try:
            result = subprocess.run(
                [exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except (OSError, subprocess.SubprocessError):
            return []
        if result.returncode == 0:
            return [_gpu_line(line) for line in result.stdout.splitlines() if line.strip()]
    return []


def _gpu_line(line: str) -> NvidiaGpu:
    name, driver, memory, *capability = [part.strip() for part in line.split(",")]
    return NvidiaGpu(
        name, driver or None, int(memory) if memory.isdigit() else None, capability[0] if capability else None
    )


def nvidia_driver(gpus: list[NvidiaGpu] | None = None) -> str | None:
    """The loaded NVIDIA driver's version (from nvidia-smi's `gpus`, read here unless the caller has them, or the
    kernel module's /proc record where this process has the driver's device files), None without one."""
    gpus = nvidia_gpus() if gpus is None else gpus
    if gpus and gpus[0].driver:
        return gpus[0].driver
    if not any(device.exists() for device in NVIDIA_DEVICES):
        return None
    try:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", NVIDIA_PROC.read_text(encoding="utf-8"))
    except OSError:
        return None
    return found.group(1) if found else "unknown"


def gpus_hidden() -> bool:
    """CUDA_VISIBLE_DEVICES set to nothing (or -1): the user hid the GPUs from this process on purpose."""
    return os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1")


def torch_cuda_version() -> str | None:
    """The CUDA version the installed torch was built for ("13.0"), None for a CPU-only (or ROCm) build."""
    import torch

    return torch.version.cuda


def driver_too_old(driver: str | None, cuda: str | None) -> int | None:
    """The oldest driver branch torch's CUDA needs, when the loaded driver is older than that; else None."""
    if not driver or not cuda or not driver.split(".")[0].isdigit():
        return None
    needed = MIN_DRIVER.get(int(cuda.split(".")[0]))
    return needed if needed and int(driver.split(".")[0]) < needed else None


def arch_runs(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether torch's compiled kernels run on a GPU of `capability`: a binary for the same major version and an
    equal or lower minor one (sm_80 runs on an 8.6), or PTX for an equal or lower one (compiled when first used)."""
    major, minor = capability
    for arch in arch_list:
        found = re.fullmatch(r"(sm|compute)_(\d+)(\d)", arch)  # "sm_86", "sm_120", "compute_90" ("sm_90a": no)
        if not found:
            continue
        kind, arch_major, arch_minor = found.group(1), int(found.group(2)), int(found.group(3))
        if kind == "sm" and arch_major == major and arch_minor <= minor:
            return True
        if kind == "compute" and (arch_major, arch_minor) <= (major, minor):
            return True
    return False


def cuda_capability(index: int = 0) -> tuple[int, int]:
    import torch

    return tuple(torch.cuda.get_device_capability(index))


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo on Linux, sysctl on a Mac), else what platform says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return apple_chip() or platform.processor() or "unknown"


def apple_chip() -> str | None:
    """The Apple chip's name ("Apple M2 Pro") on a Mac, else None."""
    if sys.platform != "darwin":
        return None
    try:
        result = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def apple_generation(chip: str | None) -> int | None:
    """The M-series generation of a chip name ("Apple M2 Pro" -> 2), None if it names none."""
    found = re.search(r"\bM(\d+)\b", chip or "")
    return int(found.group(1)) if found else None


def free_memory_bytes(device: str) -> int | None:
    """Memory free for new tensors on `device` now: the GPU's (CUDA), Metal's recommended working set less what
    it holds (MPS), the host's available RAM (CPU); None where it cannot be read."""
    import torch

    try:
        if device == "cuda":
            return int(torch.cuda.mem_get_info()[0])
        if device == "mps":
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        import psutil

        return int(psutil.virtual_memory().available)
    except (RuntimeError, AttributeError):
        return None


def release_memory(device: str) -> None:
    """Return the allocator's cached blocks to the device (after an out-of-memory error)."""
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()


def out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed: CUDA's OutOfMemoryError, or the RuntimeError MPS and the CPU allocator raise."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "MPS backend out of memory" in text or "DefaultCPUAllocator: can't allocate memory" in text
    )


def launched_distributed() -> bool:
    """Started by torchrun / accelerate launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
