"""GPU hours a plan's kernels will take from Kaggle's weekly quota: an estimate from FLOPs, set beside the quota.

Kaggle charges a GPU session's wall time, whatever its two T4s do; a kernel that trains two members in two lanes
costs the longer of the two. Per member the estimate counts the forward FLOPs of one image at its training size
(torch's FlopCounterMode on a meta-device timm model: nothing is allocated or downloaded), 3x that per trained image
(forward + backward), 1x per predicted image (validation each epoch, TTA passes on validation and test), over a
T4's effective rate:

    T4_EFFECTIVE_FLOPS = 1190 img/s x 8.2 GFLOP x 0.5 = 4.9 TFLOP/s
    1190 img/s: ResNet-50 v1.5 mixed-precision inference at batch 128 on a T4 (NVIDIA DeepLearningExamples,
    PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Inference performance: NVIDIA T4"); 8.2 GFLOP: its
    forward pass at 224 px, counted the same way; 0.5: a fastai loop with JPEG decoding and augmentation does not
    reach NVIDIA's tuned DALI pipeline (an assumption, not a measurement: replace it when a T4 run is timed).

No T4 was at hand to time one: treat the figure as the order of magnitude it is.
"""

import ast
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from paddy.core.config import TrainConfig, parse_tta
from paddy.data import competition
from paddy.kaggle.kernels import CODE_FILE

T4_EFFECTIVE_FLOPS = 1190 * 8.2e9 * 0.5
TRAIN_FLOPS_FACTOR = 3  # forward + backward (about twice the forward)
KERNEL_OVERHEAD_H = 0.1  # installing the kit and loading data, per kernel session: a few minutes


@dataclass(frozen=True)
class KernelEstimate:
    """One GPU kernel's estimated session hours and the hours of each run it trains."""

    folder: str
    kind: str
    runs: tuple  # (run name, hours) per member, or per member and fold
    hours: float


def forward_flops(arch: str, size: tuple) -> float:
    """FLOPs of one image's forward pass through timm `arch` at (height, width), counted on the meta device."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm's notes on deprecated names
        with torch.device("meta"):
            model = timm.create_model(arch, pretrained=False, num_classes=10)
            image = torch.empty(1, 3, *size)
    with FlopCounterMode(display=False) as counter:
        model(image)
    return float(counter.get_total_flops())


def member_hours(config: TrainConfig, n_train: int = competition.N_TRAIN, n_test: int = competition.N_TEST,
                 folds: int = 1, flops_per_s: float = T4_EFFECTIVE_FLOPS) -> float:
    """Estimated GPU hours of one member (each of `folds` folds trains on all but its validation part)."""
    n_valid = round(n_train * config.valid_pct)
    epochs = config.epochs + (1 if config.finetune else 0)  # fine_tune's frozen epoch
    mode, n, _ = parse_tta(config.tta)
    passes = {"fastai": n + 1, "flip": 2, "none": 1}[mode]
    images = TRAIN_FLOPS_FACTOR * epochs * (n_train - n_valid) + epochs * n_valid + passes * (n_valid + n_test)
    return folds * images * forward_flops(config.arch, config.size) / flops_per_s / 3600


def script_members(folder: str | Path) -> tuple[str, list]:
    """The kind of a rendered kernel (probe, member, lanes, ensemble) and the configs its script carries."""
    text = (Path(folder) / CODE_FILE).read_text()
    found = re.match(r'"""paddy (\w+) kernel', text)
    kind = found.group(1) if found else "?"
    literals = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("CONFIG", "MEMBERS"):
                literals[node.targets[0].id] = ast.literal_eval(node.value)
    found = [literals["CONFIG"]] if "CONFIG" in literals else literals.get("MEMBERS", [])
    return kind, [TrainConfig.from_dict(m) for m in found]


def kernel_estimates(folders: list, meta_of, folds: int = 1) -> list:
    """Estimates of the GPU kernels among `folders` (meta_of(folder) -> metadata); the probe tries 1 epoch each."""
    estimates = []
    for folder in folders:
        if not meta_of(folder).get("enable_gpu"):
            continue  # the ensemble kernel: CPU only, no quota
        kind, configs = script_members(folder)
        if kind == "probe":  # one epoch on the smallest class, about two accum tries a member
            smallest = min(competition.LABEL_COUNTS.values())
            runs = tuple((c.run_name, 2 * member_hours(c.replace(epochs=1, finetune=False, tta="none",
                                                                   valid_pct=0.5), n_train=2 * smallest, n_test=0))
                         for c in configs)
            hours = sum(h for _, h in runs)
        else:
            runs = tuple((c.run_name, member_hours(c, folds=folds)) for c in configs)
            hours = max((h for _, h in runs), default=0.0)  # lanes: the kernel lasts as long as its longest run
        estimates.append(KernelEstimate(str(folder), kind, runs, hours + KERNEL_OVERHEAD_H))
    return estimates


def needs_confirmation(hours: float, remaining_h: float) -> bool:
    """True when a push would use more than half of the GPU quota left this week."""
    return hours > remaining_h / 2
