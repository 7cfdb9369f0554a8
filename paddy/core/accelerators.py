"""Accelerator facts in one place: Kaggle's machine shapes, the GPUs behind them, their count and usable memory.

Pure data and small functions (no torch, no kaggle import): kernel rendering checks `--accelerator` against it,
plans and the probe take their default memory budget from it, and the kernel's start-up check compares what it got
with it. Each figure names its source; update the figure and its source together.
"""

from dataclasses import dataclass

from paddy.core.errors import ConfigError

# kaggle client 2.2.5, kaggle/api/kaggle_api_extended.py `_RETIRED_ACCELERATORS` (lower-cased keys there) and the
# `--accelerator` help in kaggle/cli.py: the retired shapes still push, but Kaggle runs a replacement instead.
RETIRED_SHAPES = {
    "NvidiaTeslaP100": "NvidiaTeslaT4",
    "TpuV38": "TpuV5E8",
    "Tpu1VmV38": "TpuV5E8",
    "TpuV232": None,  # "Sessions run on CPU instead, with no accelerator at all."
    "TpuV2256": None,
}
DEFAULT_GPU_SHAPE = "NvidiaTeslaT4"  # the client's "default GPU"; kaggle/cli.py: "'NvidiaTeslaT4' for GPU T4 x2"


@dataclass(frozen=True)
class Gpu:
    """One GPU model: how torch names it, its compute capability, and the memory a process can use."""

    key: str
    device_name: str  # a substring of torch.cuda.get_device_name()
    capability: tuple  # (major, minor): torch needs sm_<major><minor> (or a compatible PTX) in its arch list
    usable_gb: float
    source: str  # where usable_gb comes from


@dataclass(frozen=True)
class Accelerator:
    """What a kernel or box offers: `count` GPUs of one kind (count 0: CPU only), and the Kaggle shape asking for it."""

    key: str
    gpu: str | None
    count: int
    machine_shape: str | None  # the kernel-metadata.json value; None: not offered on Kaggle
    source: str


GPUS = {
    "t4": Gpu("t4", "T4", (7, 5), 15.0,
              "NVIDIA T4 datasheet: 16 GB GDDR6, of which ECC and the driver leave about 15 GB to a process "
              "(nvidia-smi reports 15360 MiB per T4, as publicly reported from Kaggle sessions); Kaggle lists "
              "'GPU T4 x2' at 15 GB each (kaggle-cli PR #1198)"),
    "p100": Gpu("p100", "P100", (6, 0), 16.0,
                "NVIDIA Tesla P100 PCIe 16 GB datasheet (retired on Kaggle: kaggle 2.2.5 _RETIRED_ACCELERATORS)"),
    "h200": Gpu("h200", "H200", (9, 0), 139.0,
                "the device machine's own report (bench/results/h200): about 139 GiB usable of 141 GB HBM3e"),
    # The cards below are not Kaggle's: a `paddy probe --gpu` budget for a box of one's own. nvidia-smi's
    # memory.total as commonly reported (after ECC), in GiB; not measured here: correct a figure a card disputes.
    "v100": Gpu("v100", "V100", (7, 0), 15.8, "the 16 GB V100: 16160 MiB per nvidia-smi"),
    "l4": Gpu("l4", "L4", (8, 9), 22.5, "24 GB GDDR6: 23034 MiB per nvidia-smi after ECC"),
    "a10g": Gpu("a10g", "A10G", (8, 6), 22.5, "24 GB GDDR6: 23028 MiB per nvidia-smi after ECC"),
    "a100-40": Gpu("a100-40", "A100", (8, 0), 40.0, "40 GB HBM2: 40960 MiB per nvidia-smi"),
    "a100-80": Gpu("a100-80", "A100", (8, 0), 80.0, "80 GB HBM2e: 81920 MiB per nvidia-smi"),
    "h100": Gpu("h100", "H100", (9, 0), 79.6, "80 GB HBM3: 81559 MiB per nvidia-smi"),
}

ACCELERATORS = {
    "t4x2": Accelerator("t4x2", "t4", 2, "NvidiaTeslaT4",
                        "kaggle 2.2.5: NvidiaTeslaT4 is 'GPU T4 x2', the default GPU; a single T4 is not offered"),
    "p100": Accelerator("p100", "p100", 1, "NvidiaTeslaP100", "retired on Kaggle (kaggle 2.2.5)"),
    "h200": Accelerator("h200", "h200", 1, None, "the development device machine; not a Kaggle shape"),
    "cpu": Accelerator("cpu", None, 0, None, "no GPU"),
}
DEFAULT_ACCELERATOR = "t4x2"


def check_machine_shape(shape: str) -> str:
    """`shape` in the client's spelling when it is a current Kaggle GPU shape; ConfigError naming the way on."""
    known = {s.lower(): s for s in (*RETIRED_SHAPES, DEFAULT_GPU_SHAPE, "TpuV5E8")}
    spelled = known.get(str(shape).strip().lower())
    if spelled is None:
        raise ConfigError(f"unknown Kaggle accelerator {shape!r}; the kaggle client knows {DEFAULT_GPU_SHAPE} "
                          "(GPU T4 x2) and TpuV5E8")
    if spelled in RETIRED_SHAPES:
        instead = RETIRED_SHAPES[spelled] or "CPU, with no accelerator"
        way_on = f"use --accelerator {instead}" if RETIRED_SHAPES[spelled] else "use --no-gpu"
        raise ConfigError(f"Kaggle retired {spelled} (its sessions run on {instead} instead); {way_on}")
    if spelled.startswith("Tpu"):
        raise ConfigError(f"{spelled} is a TPU: the kit trains with torch on CUDA; use --accelerator "
                          f"{DEFAULT_GPU_SHAPE} or --no-gpu")
    return spelled


def accelerator(key: str) -> Accelerator:
    """The Accelerator named `key` (t4x2, h200, cpu); ConfigError for a retired or unknown one."""
    found = ACCELERATORS.get(str(key).strip().lower())
    if found is None:
        raise ConfigError(f"unknown accelerator {key!r}; known: {', '.join(a for a in ACCELERATORS if a != 'p100')}")
    if found.key == "p100":
        raise ConfigError("Kaggle retired the P100 (its sessions run on GPU T4 x2); use accelerator = \"t4x2\"")
    return found


def gpu(key: str) -> Gpu:
    """The Gpu named `key` (t4, h200, p100); ConfigError naming the known ones otherwise."""
    found = GPUS.get(str(key).strip().lower())
    if found is None:
        raise ConfigError(f"unknown GPU {key!r}; known: {', '.join(GPUS)}")
    return found


def budget_gb(accelerator_key: str) -> float | None:
    """The memory budget of one process on `accelerator_key`: its GPU's usable memory; None on CPU."""
    found = accelerator(accelerator_key)
    return GPUS[found.gpu].usable_gb if found.gpu else None


def arch_supports(capability: tuple, arch_list: list) -> bool:
    """Whether a torch build with `arch_list` (torch.cuda.get_arch_list()) has kernels for `capability`.

    A build runs on its exact sm_XY, on a later minor of the same major (CUDA binary compatibility), and through
    a compute_XY PTX entry on any GPU of capability XY or newer (JIT-compiled at first use).
    """
    major, minor = capability
    for entry in arch_list:
        kind, _, digits = entry.partition("_")
        if not digits.isdigit() or len(digits) < 2:
            continue
        built = (int(digits[:-1]), int(digits[-1]))
        if kind == "sm" and built[0] == major and built[1] <= minor:
            return True
        if kind == "compute" and built <= (major, minor):
            return True
    return False


def shape_accelerator(shape: str) -> Accelerator:
    """The Accelerator behind Kaggle machine shape `shape` (checked: retired and unknown shapes are refused)."""
    spelled = check_machine_shape(shape)
    return next(a for a in ACCELERATORS.values() if a.machine_shape == spelled)
