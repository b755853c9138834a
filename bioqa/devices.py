"""Device and precision, decided once at start-up, before any weights load.

Order: CUDA, then Apple MPS, then CPU, unless `--device` says otherwise. A precision is chosen where the device
computes it natively, never where it is emulated (slower than the format it replaces):
* CUDA: bf16 autocast on compute capability 8.0 or newer (Ampere on), else fp16 autocast with loss scaling (a T4
  or V100: `torch.cuda.is_bf16_supported()` in torch 2.13 also counts their software bf16); the frozen base
  loads in that half type (LoRA weights stay fp32).
* MPS: bf16 autocast on an M3 or newer under macOS 14 (if a probe step runs there and stays finite), else fp16
  autocast with a gradient scaler (accelerate 1.15 on torch >= 2.5): M1 and M2 compute fp16 natively and emulate
  bf16 in float32. Weights stay fp32 on MPS.
* CPU: where the processor computes bf16 natively (AVX512-BF16 or AMX), the frozen base loads in bf16
  and trains under bf16 autocast (LoRA weights and optimizer state stay fp32): a LoRA step of a 135M
  model ran 1.1-1.2x faster than fp32 weights under the same autocast (docs/BENCHMARKS.md); else fp32.
`--precision fp32` (or bf16 / fp16) forces a choice; impossible ones raise InputError. A machine whose NVIDIA GPU
torch cannot use (a CPU-only build, a driver too old for torch's CUDA, a GPU torch has no kernels for) is refused
with the fix rather than trained on the CPU unnoticed, unless the CPU is asked for.

Generation (evaluations and --do_predict) has its own dtype, `--generation_dtype`: auto is bf16 where the
device computes it natively (CUDA 8.0+, a CPU with AVX512-BF16/AMX: --do_predict on 100 PubMedQA
prompts ran 1.6-1.8x faster end to end than in fp32 on a CPU), fp16 on an older CUDA GPU, the 4-bit layers'
compute dtype for a 4-bit base, else fp32 (MPS: not measured there yet).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bioqa import compat, hardware
from bioqa.errors import InputError, option

DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda", "mps" or "cpu"
    precision: str  # autocast precision for training: "bf16", "fp16" or "fp32"
    weights_dtype: str  # dtype the base model loads in: "bfloat16", "float16" or "float32"
    reason: str  # one line for the log: why this choice
    generation_dtype: str = "float32"  # dtype evaluations and --do_predict generate in

    def describe(self) -> str:
        return (
            f"device {self.device}, {self.precision} training, base weights in {self.weights_dtype} ({self.reason}); "
            f"generation in {self.generation_dtype}"
        )


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def cpu_has_native_bf16() -> bool:
    return compat.cpu_has_bf16_instructions()


def cuda_has_native_bf16() -> bool:
    """Compute capability 8.0 or newer (ROCm: as torch says). Not `torch.cuda.is_bf16_supported()`, which in torch
    2.13 also answers True for a T4 or V100 that only emulates bf16."""
    import torch

    return bool(torch.version.hip) or hardware.cuda_capability()[0] >= 8


def mps_has_native_bf16() -> bool:
    """An M3 or newer under macOS 14+: an M1 / M2 GPU emulates bf16 in float32 (transformers' own note), and Metal
    has bf16 only from macOS 14."""
    import torch

    generation = hardware.apple_generation(hardware.apple_chip())
    return generation is not None and generation >= 3 and torch.backends.mps.is_macos_or_newer(14, 0)


def mps_trains_in_bf16() -> bool:
    """One tiny autocast step on MPS: does bf16 run there and give finite gradients?"""
    import torch

    try:
        weight = torch.randn(16, 16, device="mps", requires_grad=True)
        with torch.autocast("mps", dtype=torch.bfloat16):
            loss = (torch.randn(8, 16, device="mps") @ weight).float().pow(2).mean()
        loss.backward()
        return bool(torch.isfinite(weight.grad).all().item())
    except (RuntimeError, TypeError):
        return False


def choose_device(
    device: str = "auto", precision: str = "auto", load_in_4bit: bool = False, generation: str = "auto"
) -> DeviceChoice:
    """Pick device, training precision and generation dtype; raise InputError for a combination this machine
    cannot run."""
    if device not in DEVICES:
        raise InputError(f"{option('device')} {device!r} is not one of {', '.join(DEVICES)}")
    for name, value in (("precision", precision), ("generation_dtype", generation)):
        if value not in PRECISIONS:
            raise InputError(f"{option(name)} {value!r} is not one of {', '.join(PRECISIONS)}")
    device = available_device(device)
    if load_in_4bit and device != "cuda":
        raise InputError(
            f"{option('load_in_4bit')} needs a CUDA GPU (bitsandbytes), but the device is {device}; "
            f"drop {option('load_in_4bit')} to train LoRA on the full-precision model"
        )
    choice = {"cuda": _cuda_choice, "mps": _mps_choice, "cpu": _cpu_choice}[device](precision)
    if load_in_4bit and generation == "auto":  # the 4-bit layers compute in this dtype; the rest follows them
        return replace(choice, generation_dtype=four_bit_compute_dtype(choice.precision))
    return replace(choice, generation_dtype=DTYPE_NAMES[_generation_precision(device, generation)])


def available_device(device: str, instead: str = "auto or cpu") -> str:
    """The device `--device` names (auto: the first of CUDA, MPS, CPU), if this machine can run it; a refusal
    suggests `instead` (the caller's other choices)."""
    if device in ("auto", "cuda"):
        problem = cuda_problem()
        if problem:
            raise InputError(f"{problem}; or pass {option('device')} cpu to run on the CPU anyway")
    if device == "auto":
        return "cuda" if cuda_available() else "mps" if mps_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise InputError(
            f"{option('device')} cuda was asked for but no CUDA GPU is visible; use {option('device')} {instead}"
        )
    if device == "mps" and not mps_available():
        raise InputError(
            f"{option('device')} mps was asked for but Apple MPS is not available; use {option('device')} {instead}"
        )
    return device


def cuda_problem() -> str | None:
    """Why torch cannot use this machine's NVIDIA GPU, with the fix; None when it can, or there is none (or the
    user hid them with CUDA_VISIBLE_DEVICES)."""
    import torch

    if cuda_available():
        capability = hardware.cuda_capability()
        if torch.version.hip or hardware.arch_runs(capability, torch.cuda.get_arch_list()):
            return None
        return (
            f"the GPU {torch.cuda.get_device_name()} (compute capability {capability[0]}.{capability[1]}) has no "
            f"kernels in torch {torch.__version__} (built for {' '.join(torch.cuda.get_arch_list())}); install a torch "
            "build for an older CUDA that still has them (README, 'GPU and Mac')"
        )
    if hardware.gpus_hidden():
        return None
    gpus = hardware.nvidia_gpus()  # one nvidia-smi call for the GPUs and their driver
    driver = hardware.nvidia_driver(gpus)
    if driver is None:
        return None
    gpu = f"{gpus[0].name}, driver {driver}" if gpus else f"driver {driver}"
    cuda = hardware.torch_cuda_version()
    if cuda is None:
        return (
            f"this machine has an NVIDIA GPU ({gpu}) but torch {torch.__version__} is a CPU-only build, so it would "
            "run on the CPU; install torch's CUDA build (README, 'GPU and Mac')"
        )
    needed = hardware.driver_too_old(driver, cuda)
    why = f": CUDA {cuda.split('.')[0]} needs driver R{needed} or newer" if needed else ""
    return (
        f"torch {torch.__version__} is built for CUDA {cuda} but cannot use this machine's NVIDIA GPU ({gpu}){why}; "
        "update the NVIDIA driver, or install a torch build for the CUDA version your driver supports "
        "(README, 'GPU and Mac')"
    )


def four_bit_compute_dtype(precision: str) -> str:
    """The dtype a 4-bit (bitsandbytes NF4) base computes in: bf16 when training in bf16, else fp16."""
    return "bfloat16" if precision == "bf16" else "float16"


def _generation_precision(device: str, asked: str) -> str:
    """bf16 where the device computes it natively, fp16 on a CUDA GPU without it, else fp32; or what was asked,
    if the device can run it."""
    if device == "cuda":
        native = "bf16" if cuda_has_native_bf16() else "fp16"
    else:
        native = "bf16" if device == "cpu" and cpu_has_native_bf16() else "fp32"
    if asked == "auto":
        return native
    if asked == "bf16" and native != "bf16" and device != "mps":
        raise InputError(
            f"{option('generation_dtype')} bf16 was asked for but this {device} does not compute bf16 natively; "
            "use auto or fp32"
        )
    if asked == "fp16" and device == "cpu":
        raise InputError(f"{option('generation_dtype')} fp16 is not supported on CPU; use auto, bf16 or fp32")
    return asked


def _cuda_choice(precision: str) -> DeviceChoice:
    bf16 = cuda_has_native_bf16()
    if precision == "bf16" and not bf16:
        raise InputError(
            f"{option('precision')} bf16 was asked for but this GPU (compute capability below 8.0) only emulates "
            "bf16; use fp16 or auto"
        )
    if precision == "fp32":
        return DeviceChoice("cuda", "fp32", "float32", f"forced by {option('precision')} fp32")
    if precision == "bf16" or (precision == "auto" and bf16):
        return DeviceChoice("cuda", "bf16", "bfloat16", "the GPU computes bf16 natively (compute capability 8.0+)")
    reason = "fp16 with loss scaling" + (
        "" if precision == "fp16" else ": the GPU (compute capability < 8.0) emulates bf16"
    )
    return DeviceChoice("cuda", "fp16", "float16", reason)


def _mps_choice(precision: str) -> DeviceChoice:
    if precision == "fp32":
        return DeviceChoice("mps", "fp32", "float32", f"forced by {option('precision')} fp32")
    if precision == "fp16":
        return DeviceChoice("mps", "fp16", "float32", f"fp16 with loss scaling, forced by {option('precision')} fp16")
    native = mps_has_native_bf16()
    if precision == "bf16" or native:
        if mps_trains_in_bf16():
            emulated = "" if native else ", emulated on this chip"
            return DeviceChoice("mps", "bf16", "float32", f"a bf16 autocast probe step ran on MPS{emulated}")
        if precision == "bf16":
            raise InputError(
                f"{option('precision')} bf16 was asked for but a bf16 probe step failed on this MPS device; use "
                "fp16, fp32 or auto"
            )
    chip = hardware.apple_chip() or "this Apple chip"
    return DeviceChoice(
        "mps", "fp16", "float32", f"fp16 with loss scaling: {chip} computes fp16 natively (bf16 natively from M3 on)"
    )


def _cpu_choice(precision: str) -> DeviceChoice:
    native = cpu_has_native_bf16()
    if precision == "fp16":
        raise InputError(f"{option('precision')} fp16 is not supported for training on CPU; use auto, bf16 or fp32")
    if precision == "bf16" and not native:
        raise InputError(
            f"{option('precision')} bf16 was asked for but this CPU has no native bf16 (AVX512-BF16/AMX); use fp32"
        )
    if precision == "fp32":
        return DeviceChoice("cpu", "fp32", "float32", f"forced by {option('precision')} fp32")
    if native:
        return DeviceChoice("cpu", "bf16", "bfloat16", "the CPU computes bf16 natively (AVX512-BF16/AMX)")
    return DeviceChoice("cpu", "fp32", "float32", "no native bf16 on this CPU")
