"""One process of the data-parallel equivalence test: a tiny fastai Learner on fixed tensors, trained in
paddy.vision.distributed.distributed_ctx when WORLD_SIZE > 1, else alone. Writes losses and weights (rank 0).

    python tests/distributed_worker.py OUT.json GLOBAL_BS ACCUM
"""

import json
import os
import sys

import torch
from fastai.callback.training import GradientAccumulation
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from torch import nn

from paddy.core.runtime import seed_everything
from paddy.vision.distributed import distributed_ctx, leave_process_group


def main(out, global_bs, accum):
    world = int(os.environ.get("WORLD_SIZE", 1))
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100, 8, generator=generator)  # 100: not a multiple of the batch, so padding is exercised
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    train = [(x[i], y[i]) for i in range(76)]
    valid = [(x[i], y[i]) for i in range(76, 100)]
    seed_everything(42)
    micro = global_bs // (world * accum)
    dls = DataLoaders(DataLoader(train, bs=micro, shuffle=True, drop_last=True), DataLoader(valid, bs=micro))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    cbs = [GradientAccumulation(n_acc=global_bs // world)] if accum > 1 else []
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=cbs)
    with learn.no_bar(), learn.no_logging():
        if world > 1:
            with distributed_ctx(learn, cpu=True):
                learn.fit_one_cycle(3, 0.05)
            leave_process_group()
        else:
            learn.fit_one_cycle(3, 0.05)
    if int(os.environ.get("RANK", 0)) == 0:
        weights = [p.detach().flatten().tolist() for p in learn.model.parameters()]
        valid_losses = [float(row[1]) for row in learn.recorder.values]
        with open(out, "w") as handle:
            json.dump({"valid_loss": valid_losses, "weights": weights}, handle)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
