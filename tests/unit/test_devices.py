"""Device and precision choice, with the machine's capabilities replaced by fakes."""

import pytest

from bioqa import devices
from bioqa.errors import InputError


@pytest.fixture
def machine(monkeypatch):
    """Set what the fake machine has: machine(cuda=..., cuda_bf16=..., mps=..., mps_bf16=..., cpu_bf16=...)."""
    import torch

    def configure(cuda=False, cuda_bf16=True, mps=False, mps_bf16=True, cpu_bf16=False):
        monkeypatch.setattr(devices, "cuda_available", lambda: cuda)
        monkeypatch.setattr(devices, "mps_available", lambda: mps)
        monkeypatch.setattr(devices, "mps_trains_in_bf16", lambda: mps_bf16)
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: cpu_bf16)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)

    return configure


@pytest.mark.parametrize(
    "kind, expected",
    [
        (dict(cuda=True), ("cuda", "bf16", "bfloat16", "bfloat16")),
        (dict(cuda=True, cuda_bf16=False), ("cuda", "fp16", "float16", "float16")),
        (dict(mps=True), ("mps", "bf16", "float32", "float32")),
        (dict(mps=True, mps_bf16=False), ("mps", "fp32", "float32", "float32")),
        (dict(cpu_bf16=True), ("cpu", "bf16", "bfloat16", "bfloat16")),
        (dict(), ("cpu", "fp32", "float32", "float32")),
    ],
)
def test_auto_picks_cuda_then_mps_then_cpu(machine, kind, expected):
    machine(**kind)
    choice = devices.choose_device()
    assert (choice.device, choice.precision, choice.weights_dtype, choice.generation_dtype) == expected
    assert choice.reason and choice.device in choice.describe()
    assert f"generation in {choice.generation_dtype}" in choice.describe()


@pytest.mark.parametrize(
    "kind, device, precision, generation, expected",
    [
        (dict(cpu_bf16=True), "cpu", "fp32", "auto", ("float32", "bfloat16")),  # training precision aside
        (dict(cpu_bf16=True), "cpu", "auto", "fp32", ("bfloat16", "float32")),
        (dict(cuda=True), "cuda", "auto", "fp32", ("bfloat16", "float32")),
        (dict(cuda=True, cuda_bf16=False), "cuda", "auto", "auto", ("float16", "float16")),
        (dict(mps=True), "mps", "auto", "bf16", ("float32", "bfloat16")),
    ],
)
def test_generation_dtype_is_chosen_apart_from_training(machine, kind, device, precision, generation, expected):
    machine(**kind)
    choice = devices.choose_device(device, precision, generation=generation)
    assert (choice.weights_dtype, choice.generation_dtype) == expected


def test_forced_choices(machine):
    machine(cuda=True, mps=True, cpu_bf16=True)
    assert devices.choose_device("cpu").device == "cpu"
    assert devices.choose_device("cpu", "fp32").precision == "fp32"
    assert devices.choose_device("cuda", "fp16").precision == "fp16"
    assert devices.choose_device("mps", "fp32").precision == "fp32"


@pytest.mark.parametrize(
    "kind, device, precision, four_bit, fragment",
    [
        (dict(), "auto", "auto", True, "load_in_4bit needs a CUDA GPU"),
        (dict(mps=True), "mps", "auto", True, "load_in_4bit needs a CUDA GPU"),
        (dict(), "cuda", "auto", False, "no CUDA GPU is visible"),
        (dict(), "mps", "auto", False, "MPS is not available"),
        (dict(), "cpu", "bf16", False, "no native bf16"),
        (dict(cpu_bf16=True), "cpu", "fp16", False, "not supported for training on CPU"),
        (dict(cuda=True, cuda_bf16=False), "cuda", "bf16", False, "does not support bf16"),
        (dict(mps=True), "mps", "fp16", False, "not supported on MPS"),
        (dict(mps=True, mps_bf16=False), "mps", "bf16", False, "probe step failed"),
        (dict(), "tpu", "auto", False, "not one of"),
    ],
)
def test_impossible_combinations_are_usage_errors(machine, kind, device, precision, four_bit, fragment):
    machine(**kind)
    with pytest.raises(InputError, match=fragment):
        devices.choose_device(device, precision, four_bit)


@pytest.mark.parametrize(
    "kind, device, generation, fragment",
    [
        (dict(), "cpu", "bf16", "generation_dtype bf16 was asked for but this cpu does not compute bf16 natively"),
        (dict(cuda=True, cuda_bf16=False), "cuda", "bf16", "this cuda does not compute bf16"),
        (dict(cpu_bf16=True), "cpu", "fp16", "generation_dtype fp16 is not supported on CPU"),
        (dict(), "cpu", "int8", "generation_dtype 'int8' is not one of"),
    ],
)
def test_impossible_generation_dtypes_are_usage_errors(machine, kind, device, generation, fragment):
    machine(**kind)
    with pytest.raises(InputError, match=fragment):
        devices.choose_device(device, generation=generation)


def test_this_machine_really_probes():
    choice = devices.choose_device()
    assert choice.device in ("cuda", "mps", "cpu")
    assert isinstance(devices.cpu_has_native_bf16(), bool)
