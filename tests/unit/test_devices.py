"""Device and precision choice, with the machine's capabilities replaced by fakes at the boundary torch and the
operating system report them: CUDA's availability, compute capability and kernel list, the Apple chip's name, an
NVIDIA driver's `nvidia-smi`."""

import pytest
import torch

from bioqa import devices, hardware
from bioqa.errors import InputError
from helpers import fake_nvidia_smi

TORCH_2_13_CU130_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


@pytest.fixture
def machine(monkeypatch):
    """Set what the fake machine has: machine(cuda=..., capability=..., mps=..., chip=..., mps_bf16=..., ...)."""

    def configure(
        cuda=False,
        capability=(8, 0),
        archs=TORCH_2_13_CU130_ARCHS,
        mps=False,
        chip="Apple M3 Pro",
        mps_bf16=True,
        cpu_bf16=False,
    ):
        monkeypatch.setattr(devices, "cuda_available", lambda: cuda)
        monkeypatch.setattr(hardware, "cuda_capability", lambda index=0: capability)
        monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(archs))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
        # torch 2.13 answers True for a T4 / V100 too (emulation): the choice must not rest on it
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        monkeypatch.setattr(devices, "mps_available", lambda: mps)
        monkeypatch.setattr(hardware, "apple_chip", lambda: chip)
        monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda *a: True)
        monkeypatch.setattr(devices, "mps_trains_in_bf16", lambda: mps_bf16)
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: cpu_bf16)

    return configure


@pytest.mark.parametrize(
    "kind, expected",
    [
        (dict(cuda=True), ("cuda", "bf16", "bfloat16", "bfloat16")),  # an A100
        (dict(cuda=True, capability=(7, 5)), ("cuda", "fp16", "float16", "float16")),  # a T4 emulates bf16
        (dict(cuda=True, capability=(9, 0)), ("cuda", "bf16", "bfloat16", "bfloat16")),
        (dict(mps=True), ("mps", "bf16", "float32", "float32")),  # an M3
        (dict(mps=True, chip="Apple M1"), ("mps", "fp16", "float32", "float32")),  # M1 / M2 emulate bf16
        (dict(mps=True, chip="Apple M2 Max"), ("mps", "fp16", "float32", "float32")),
        (dict(mps=True, chip="Apple M4", mps_bf16=False), ("mps", "fp16", "float32", "float32")),  # probe failed
        (dict(mps=True, chip=None), ("mps", "fp16", "float32", "float32")),  # the chip could not be read
        (dict(cpu_bf16=True), ("cpu", "bf16", "bfloat16", "bfloat16")),
        (dict(), ("cpu", "fp32", "float32", "float32")),
    ],
)
def test_auto_picks_cuda_then_mps_then_cpu_in_what_the_device_computes_natively(machine, kind, expected):
    machine(**kind)
    choice = devices.choose_device()
    assert (choice.device, choice.precision, choice.weights_dtype, choice.generation_dtype) == expected
    assert f"generation in {choice.generation_dtype}" in choice.describe()


def test_the_log_says_why(machine):
    machine(cuda=True, capability=(7, 5))
    assert "emulates bf16" in devices.choose_device().reason
    machine(mps=True, chip="Apple M2")
    assert "Apple M2 computes fp16 natively" in devices.choose_device().reason
    machine(mps=True, chip="Apple M1")
    assert devices.choose_device(precision="bf16").reason.endswith("emulated on this chip")


@pytest.mark.parametrize(
    "capability, precision, generation, expected",
    [
        ((8, 0), "auto", "auto", ("bf16", "bfloat16")),
        ((7, 5), "auto", "auto", ("fp16", "float16")),
        ((8, 0), "fp16", "auto", ("fp16", "float16")),  # the 4-bit layers compute in fp16: so does generation
        ((8, 0), "auto", "fp32", ("bf16", "float32")),  # asked for
    ],
)
def test_a_4bit_base_generates_in_its_layers_compute_dtype(machine, capability, precision, generation, expected):
    machine(cuda=True, capability=capability)
    choice = devices.choose_device("cuda", precision, load_in_4bit=True, generation=generation)
    assert (choice.precision, choice.generation_dtype) == expected
    assert devices.four_bit_compute_dtype(choice.precision) == {"bf16": "bfloat16"}.get(choice.precision, "float16")


@pytest.mark.parametrize(
    "kind, device, precision, generation, expected",
    [
        (dict(cpu_bf16=True), "cpu", "fp32", "auto", ("float32", "bfloat16")),  # training precision aside
        (dict(cpu_bf16=True), "cpu", "auto", "fp32", ("bfloat16", "float32")),
        (dict(cuda=True), "cuda", "auto", "fp32", ("bfloat16", "float32")),
        (dict(cuda=True, capability=(7, 0), archs=["sm_70"]), "cuda", "auto", "auto", ("float16", "float16")),
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
    assert devices.choose_device("mps", "fp16").precision == "fp16"  # a gradient scaler on MPS (accelerate 1.15)


@pytest.mark.parametrize(
    "kind, device, precision, four_bit, fragment",
    [
        (dict(), "auto", "auto", True, "load_in_4bit needs a CUDA GPU"),
        (dict(mps=True), "mps", "auto", True, "load_in_4bit needs a CUDA GPU"),
        (dict(), "cuda", "auto", False, "no CUDA GPU is visible"),
        (dict(), "mps", "auto", False, "MPS is not available"),
        (dict(), "cpu", "bf16", False, "no native bf16"),
        (dict(cpu_bf16=True), "cpu", "fp16", False, "not supported for training on CPU"),
        (dict(cuda=True, capability=(7, 5)), "cuda", "bf16", False, "only emulates bf16"),
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
        (dict(cuda=True, capability=(7, 5)), "cuda", "bf16", "this cuda does not compute bf16"),
        (dict(cpu_bf16=True), "cpu", "fp16", "generation_dtype fp16 is not supported on CPU"),
        (dict(), "cpu", "int8", "generation_dtype 'int8' is not one of"),
    ],
)
def test_impossible_generation_dtypes_are_usage_errors(machine, kind, device, generation, fragment):
    machine(**kind)
    with pytest.raises(InputError, match=fragment):
        devices.choose_device(device, generation=generation)


@pytest.fixture
def driver(machine, monkeypatch, tmp_path):
    """A machine whose NVIDIA driver lists a GPU (a fake nvidia-smi first on PATH) that torch does not see."""

    def install(gpu: str = "Tesla V100-SXM2-16GB, 535.104.05, 16384, 7.0", torch_cuda: str | None = None):
        machine(cuda=False)
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        monkeypatch.setenv("PATH", f"{fake_nvidia_smi(folder, gpu)}:{__import__('os').environ['PATH']}")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        monkeypatch.setattr(torch.version, "cuda", torch_cuda)

    return install


def test_a_gpu_that_a_cpu_only_torch_cannot_use_is_refused_before_anything_loads(driver):
    driver()
    with pytest.raises(InputError) as refused:
        devices.choose_device()
    message = str(refused.value)
    assert "NVIDIA GPU (Tesla V100-SXM2-16GB, driver 535.104.05)" in message and "CPU-only build" in message
    assert "install torch's CUDA build" in message and message.endswith("device cpu to run on the CPU anyway")
    assert devices.choose_device("cpu").device == "cpu"  # asked for: no complaint


@pytest.mark.parametrize(
    "driver_version, needs", [("535.104.05", "CUDA 13 needs driver R580 or newer"), ("590.12", None)]
)
def test_a_driver_too_old_for_torchs_cuda_is_named(driver, driver_version, needs):
    driver(f"NVIDIA A100-SXM4-80GB, {driver_version}, 81920, 8.0", torch_cuda="13.0")
    with pytest.raises(InputError) as refused:
        devices.choose_device("cuda")
    message = str(refused.value)
    gpu = f"(NVIDIA A100-SXM4-80GB, driver {driver_version})"
    assert f"built for CUDA 13.0 but cannot use this machine's NVIDIA GPU {gpu}" in message
    assert (needs in message) if needs else ("needs driver" not in message)
    assert "update the NVIDIA driver" in message


def test_gpus_hidden_on_purpose_are_not_a_problem(driver, monkeypatch):
    driver()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.choose_device().device == "cpu"


def test_a_gpu_without_kernels_in_this_torch_is_refused(machine):
    machine(cuda=True, capability=(7, 0))  # a V100 under a CUDA 13 build: sm_75 and newer only
    with pytest.raises(InputError, match=r"compute capability 7\.0\) has no kernels in torch"):
        devices.choose_device()


@pytest.mark.parametrize(
    "capability, archs, runs",
    [
        ((8, 6), ["sm_80"], True),  # a binary for 8.0 runs on 8.6
        ((8, 0), ["sm_86"], False),  # not the other way
        ((7, 0), TORCH_2_13_CU130_ARCHS, False),
        ((9, 0), ["sm_80", "compute_80"], True),  # PTX for 8.0 compiles for 9.0
        ((12, 0), TORCH_2_13_CU130_ARCHS, True),
        ((10, 0), ["sm_90a", "sm_120"], False),  # arch-specific 9.0a code runs on 9.0 only
    ],
)
def test_which_gpus_torchs_kernels_run_on(capability, archs, runs):
    assert hardware.arch_runs(capability, archs) is runs


def test_the_driver_is_read_from_nvidia_smi_of_old_and_new_drivers(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path, 'NVIDIA L4, 580.65.06, 23034, 8.9')}:/usr/bin:/bin")
    assert hardware.nvidia_gpus() == [hardware.NvidiaGpu("NVIDIA L4", "580.65.06", 23034, "8.9")]
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path, 'Tesla P100, 470.82, 16280')}:/usr/bin:/bin")
    assert hardware.nvidia_gpus() == [hardware.NvidiaGpu("Tesla P100", "470.82", 16280, None)]  # no compute_cap
    assert hardware.nvidia_driver() == "470.82"
    monkeypatch.setenv("PATH", "/nonexistent")
    assert hardware.nvidia_gpus() == []


def test_the_driver_is_read_from_the_kernel_modules_record_without_nvidia_smi(tmp_path, monkeypatch):
    record = tmp_path / "version"
    record.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build\n")
    (tmp_path / "nvidiactl").touch()
    monkeypatch.setattr(hardware, "NVIDIA_PROC", record)
    monkeypatch.setattr(hardware, "NVIDIA_DEVICES", (tmp_path / "nvidiactl",))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert hardware.nvidia_driver() == "580.65.06"
    monkeypatch.setattr(hardware, "NVIDIA_DEVICES", (tmp_path / "absent",))  # a container without GPU access
    assert hardware.nvidia_driver() is None
    monkeypatch.setattr(hardware, "NVIDIA_DEVICES", (tmp_path / "nvidiactl",))
    monkeypatch.setattr(hardware, "NVIDIA_PROC", tmp_path / "absent")
    assert hardware.nvidia_driver() is None


@pytest.mark.parametrize(
    "chip, generation",
    [("Apple M1", 1), ("Apple M2 Pro", 2), ("Apple M4 Max", 4), ("Intel Core i9", None), (None, None)],
)
def test_the_apple_generation_is_read_from_the_chip_name(chip, generation):
    assert hardware.apple_generation(chip) == generation


def test_this_machine_really_probes():
    choice = devices.choose_device()
    expected = "cuda" if torch.cuda.is_available() else "mps" if devices.mps_available() else "cpu"
    assert choice.device == expected
    if expected == "cpu":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        assert devices.cpu_has_native_bf16() is native and choice.precision == ("bf16" if native else "fp32")
