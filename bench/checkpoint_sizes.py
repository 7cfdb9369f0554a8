"""How large a full checkpoint (weights + Adam's two moments) is for each member of a plan, and whether it fits.

Builds each member's fastai model (timm body + fastai head, 10 classes) on the meta device: no weights are
downloaded or allocated. A checkpoint holds the parameters three times in float32 (weights, Adam's running mean
and mean of squares; mixed precision keeps float32 weights) plus the buffers (batch-norm statistics). Only the
latest checkpoint of the running member is kept (and removed when it completes), and the next one is written
before the last is removed, so a plan needs room for two of its largest member's at once, beside the exported
model.pkl (weights only) every finished run folder keeps.

    .venv/bin/python bench/checkpoint_sizes.py [--plan road-to-the-top] [--disk-gb 20]
"""

import argparse
import sys
import warnings

import torch
from fastai.vision.learner import create_timm_model

from paddy.core.plan import load_plan

FLOAT32 = 4
COPIES = 3  # weights, Adam's grad_avg and sqr_avg


def model_sizes(arch: str, n_out: int = 10) -> tuple[int, int, int]:
    """(parameters, checkpoint bytes, exported-model bytes) of the kit's model for `arch`, on the meta device."""
    with torch.device("meta"):
        model, _ = create_timm_model(arch, n_out, pretrained=False)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return params, params * FLOAT32 * COPIES + buffers, params * FLOAT32 + buffers


def main(argv=None):
    """Print one row per distinct arch of the plan, then the peak the plan needs on disk."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="road-to-the-top")
    parser.add_argument("--disk-gb", type=float, default=20.0, help="the working disk (Kaggle: 20 GB)")
    args = parser.parse_args(argv)
    members = load_plan(args.plan).members
    with warnings.catch_warnings():  # timm's notes on renamed (deprecated) architecture names
        warnings.simplefilter("ignore")
        sizes = {arch: model_sizes(arch) for arch in dict.fromkeys(m.arch for m in members)}
    print("| arch | parameters | checkpoint (weights + Adam) | model.pkl (weights) |\n|---|---|---|---|")
    for arch, (params, checkpoint, exported) in sizes.items():
        print(f"| {arch} | {params / 1e6:.1f} M | {checkpoint / 1e9:.2f} GB | {exported / 1e9:.2f} GB |")
    peak = 2 * max(checkpoint for _, checkpoint, _ in sizes.values())
    models = sum(sizes[m.arch][2] for m in members)
    need = peak + models
    print(f"\n{len(members)} members in one session: {models / 1e9:.2f} GB of model.pkl files kept, plus "
          f"{peak / 1e9:.2f} GB while the largest checkpoint is replaced: {need / 1e9:.2f} GB of the "
          f"{args.disk_gb:g} GB working disk ({'fits' if need < args.disk_gb * 1e9 else 'does NOT fit'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
