"""The learner: a timm architecture checked by name, built into a fastai vision_learner with the kit's head and loss."""

import difflib

import timm
from fastai.data.core import DataLoaders
from fastai.vision.all import CrossEntropyLossFlat, GradientAccumulation, Learner, error_rate, vision_learner
from timm.models import get_deprecated_models, get_pretrained_cfg, is_model, split_model_name_tag
from torch import nn

from paddy.core import runtime
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.data.loaders import dataloader_vocabs
from paddy.vision import multitask


def check_arch(name: str) -> str:
    """Return `name` when timm knows it (tags and deprecated aliases too); else ConfigError naming close matches."""
    arch, tag = split_model_name_tag(name)
    deprecated = get_deprecated_models()
    if arch in deprecated and deprecated[arch] is None:
        raise ConfigError(f"timm removed architecture {arch!r} without a replacement; choose another arch")
    if not is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models() + list(deprecated), n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
        raise ConfigError(f"unknown timm architecture {name!r}; {hint}")
    if tag:
        try:
            get_pretrained_cfg(name)
        except RuntimeError:
            tags = sorted(n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*"))
            known = ", ".join(tags) or "none"
            raise ConfigError(f"{arch!r} has no pretrained tag {tag!r}; known tags: {known}") from None
    return name


def build_learner(dls: DataLoaders, config: TrainConfig, device: str | None = None) -> Learner:
    """A fastai vision_learner on the timm arch: loss and metrics per target, accumulation, fp16 only on CUDA."""
    device = runtime.resolve_device(config.device if device is None else device)
    head_sizes = multitask.head_sizes_for(dataloader_vocabs(dls, config.targets), config.targets)
    if len(config.targets) > 1:
        loss_func = multitask.MultiTargetLoss(head_sizes, config.target_weights)
        metrics = multitask.multitask_metrics(config.targets, head_sizes)
    else:
        loss_func, metrics = CrossEntropyLossFlat(), [error_rate]
    # fastai counts samples, not batches: n_acc=bs steps once per effective batch of bs images. When the micro-batch
    # does not divide bs (bs=50, accum=4: micro-batches of 12), n_acc=bs would wait for a 5th (60 images) and scale
    # their gradient by 60/50; step after the whole micro-batches that fit in bs instead (48), at their mean.
    n_acc = config.micro_bs * (config.bs // config.micro_bs)
    cbs = [GradientAccumulation(n_acc=n_acc)] if config.micro_bs < config.bs else []
    runtime.seed_everything(config.seed)
    try:
        learn = vision_learner(dls, config.arch, pretrained=config.pretrained, n_out=sum(head_sizes),
                               loss_func=loss_func, metrics=metrics, cbs=cbs)
    except OSError as error:  # huggingface_hub's "not in the local cache" errors are FileNotFoundErrors
        if not config.pretrained:
            raise
        raise ConfigError(f"could not load pretrained weights for {config.arch} ({type(error).__name__}): go online "
                          "once to fill the Hugging Face cache, or train from scratch with --no-pretrained") from None
    if getattr(learn.model[0].model, "output_fmt", "NCHW") == "NHWC":
        # timm's swin and swinv2 return channels-last features; fastai's pooled head expects NCHW.
        learn.model[1] = nn.Sequential(ChannelsFirst(), learn.model[1])
    if str(device).startswith("cuda"):
        learn = learn.to_fp16()
    return learn


class ChannelsFirst(nn.Module):
    """NHWC features to NCHW, so a fastai head can pool them."""

    def forward(self, x):
        return x.permute(0, 3, 1, 2)
