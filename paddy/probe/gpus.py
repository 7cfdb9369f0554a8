"""GPUs by name and the memory a budget for each can count on (no torch import: the CLI reads it for --help)."""

# Usable memory per GPU in GB (1 GB = 1024 MiB): nvidia-smi's memory.total for the card (after ECC) as commonly
# reported, divided by 1024. Not measured here: correct a figure when a card says otherwise. A budget applies to the
# process total, which includes the CUDA context (about 0.85 GB on the H200 of bench/results/h200).
GPU_MEMORY_GB = {
    "t4": 15.0,  # 15360 MiB of 16 GB; Kaggle's "GPU T4 x2" is two of them (kaggle-cli PR #1198, DESIGN.md)
    "p100": 15.9,  # 16 GB HBM2, 16280 MiB (Kaggle's retired P100)
    "v100": 15.8,  # the 16 GB V100, 16160 MiB
    "l4": 22.5,  # 24 GB GDDR6, 23034 MiB after ECC
    "a10g": 22.5,  # 24 GB GDDR6, 23028 MiB after ECC
    "a100-40": 40.0,  # 40 GB HBM2, 40960 MiB
    "a100-80": 80.0,  # 80 GB HBM2e, 81920 MiB
    "h100": 79.6,  # 80 GB HBM3, 81559 MiB
    "h200": 139.0,  # 141 GB HBM3e; "about 139 GiB" as this project's device tool reports its H200
}


def gpu_budget_gb(name):
    """The usable GB of a GPU named in GPU_MEMORY_GB (case-insensitive); KeyError names the known ones."""
    key = name.strip().lower()
    if key not in GPU_MEMORY_GB:
        raise KeyError(f"unknown GPU {name!r}; known: {', '.join(GPU_MEMORY_GB)}")
    return GPU_MEMORY_GB[key]
