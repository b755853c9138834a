"""Device and precision, decided once at start-up, before any weights load.

Order: CUDA, then Apple MPS, then CPU, unless `--device` says otherwise. Precision:
* CUDA: bf16 autocast where the GPU supports it, else fp16 autocast with loss scaling; the frozen
  base loads in that half type (LoRA weights stay fp32).
* MPS: bf16 autocast if a probe step (matmul, backward) runs and stays finite there, else fp32.
  fp16 autocast is refused: its gradient scaler is not supported on MPS.
* CPU: where the processor computes bf16 natively (AVX512-BF16 or AMX), the frozen base loads in bf16
  and trains under bf16 autocast (LoRA weights and optimizer state stay fp32): a LoRA step of a 135M
  model ran 1.1-1.2x faster than fp32 weights under the same autocast (docs/BENCHMARKS.md); else fp32.
  Weights stay fp32 on MPS.
`--precision fp32` (or bf16 / fp16) forces a choice; impossible ones raise InputError.

Generation (evaluations and --do_predict) has its own dtype, `--generation_dtype`: auto is bf16 where the
device computes it natively (CUDA with bf16, a CPU with AVX512-BF16/AMX: --do_predict on 100 PubMedQA
prompts ran 1.6-1.8x faster end to end than in fp32 here), fp16 on a CUDA GPU without bf16, else fp32.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


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
    if device == "auto":
        device = "cuda" if cuda_available() else "mps" if mps_available() else "cpu"
    elif device == "cuda" and not cuda_available():
        raise InputError(
            f"{option('device')} cuda was asked for but no CUDA GPU is visible; use {option('device')} auto or cpu"
        )
    elif device == "mps" and not mps_available():
        raise InputError(
            f"{option('device')} mps was asked for but Apple MPS is not available; use {option('device')} auto or cpu"
        )
    if load_in_4bit and device != "cuda":
        raise InputError(
            f"{option('load_in_4bit')} needs a CUDA GPU (bitsandbytes), but the device is {device}; "
            f"drop {option('load_in_4bit')} to train LoRA on the full-precision model"
        )
    choice = {"cuda": _cuda_choice, "mps": _mps_choice, "cpu": _cpu_choice}[device](precision)
    return replace(choice, generation_dtype=DTYPE_NAMES[_generation_precision(device, generation)])


def _generation_precision(device: str, asked: str) -> str:
    """bf16 where the device computes it natively, fp16 on a CUDA GPU without it, else fp32; or what was asked,
    if the device can run it."""
    if device == "cuda":
        import torch

        native = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
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
    import torch

    bf16 = torch.cuda.is_bf16_supported()
    if precision == "bf16" and not bf16:
        raise InputError(
            f"{option('precision')} bf16 was asked for but this GPU does not support bf16; use fp16 or auto"
        )
    if precision == "fp32":
        return DeviceChoice("cuda", "fp32", "float32", f"forced by {option('precision')} fp32")
    if precision == "bf16" or (precision == "auto" and bf16):
        return DeviceChoice("cuda", "bf16", "bfloat16", "the GPU supports bf16")
    return DeviceChoice(
        "cuda", "fp16", "float16", "fp16 with loss scaling" + ("" if precision == "fp16" else ": no bf16 on this GPU")
    )


def _mps_choice(precision: str) -> DeviceChoice:
    if precision == "fp16":
        raise InputError(
            f"{option('precision')} fp16 is not supported on MPS (no gradient scaler there); use auto, bf16 or fp32"
        )
    if precision == "fp32":
        return DeviceChoice("mps", "fp32", "float32", f"forced by {option('precision')} fp32")
    if mps_trains_in_bf16():
        return DeviceChoice("mps", "bf16", "float32", "a bf16 autocast probe step ran on MPS")
    if precision == "bf16":
        raise InputError(
            f"{option('precision')} bf16 was asked for but a bf16 probe step failed on this MPS device; use fp32"
        )
    return DeviceChoice("mps", "fp32", "float32", "bf16 autocast failed a probe step on this MPS device, so fp32")


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
