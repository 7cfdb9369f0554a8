"""Trace training steps of the kit's learner on fake tensors: every storage the step allocates and frees, in order.

No GPU and no real memory: the learner is built by `build_learner` on the meta device (random init is skipped,
nothing is downloaded), then its parameters become `FakeTensor`s, which carry shapes, dtypes and storages but no
data. A `TorchDispatchMode` sees every ATen op's outputs and logs each new storage and, through a weakref finalizer,
the moment Python frees it: parameters, gradients, optimizer state, activations saved for backward, autocast copies
and temporaries, as the CUDA caching allocator would see them.

Fake CUDA tensors cannot run backward without a driver (the autograd engine asks the device for its context), so the
trace runs on fake CPU tensors with CUDA autocast's policy: CPU autocast at float16 casts the same matmul/conv ops
down (with the same weight-cast cache), and `_Float32Ops` casts CUDA's float32 list up (layer_norm, softmax, sum ...),
which CPU autocast leaves in float16.
"""

import contextlib
import weakref
from pathlib import Path

import torch
from fastai.losses import BaseLoss
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

from paddy.train import build_learner

# CUDA autocast's float32 list, as torch's AMP docs name it ("CUDA Ops that can autocast to float32").
FP32_OPS = frozenset({
    "__pow__", "__rdiv__", "__rpow__", "__rtruediv__", "acos", "asin", "binary_cross_entropy_with_logits", "cosh",
    "cosine_embedding_loss", "cdist", "cosine_similarity", "cross_entropy", "cumprod", "cumsum", "dist", "erfinv",
    "exp", "expm1", "group_norm", "hinge_embedding_loss", "kl_div", "l1_loss", "layer_norm", "log", "log_softmax",
    "log10", "log1p", "log2", "margin_ranking_loss", "mse_loss", "multilabel_margin_loss", "multi_margin_loss",
    "nll_loss", "norm", "normalize", "pdist", "poisson_nll_loss", "pow", "prod", "reciprocal", "rsqrt", "sinh",
    "smooth_l1_loss", "soft_margin_loss", "softmax", "softmin", "softplus", "sum", "renorm", "tan",
    "triplet_margin_loss"})
LOSS_SCALE = 65536.0  # GradScaler's initial scale: the loss is multiplied by it before backward


def _to_float32(value):
    if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
        return value.float()
    return value


class _Float32Ops(TorchFunctionMode):
    """Run the ops of CUDA autocast's float32 list on float32 copies of their half-precision inputs."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in FP32_OPS:
            args, kwargs = tree_map(_to_float32, args), tree_map(_to_float32, kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def cuda_autocast():
    """CUDA float16 autocast's casts, on CPU tensors (see the module's docstring)."""
    with torch.autocast("cpu", dtype=torch.float16), _Float32Ops():
        yield


class StorageCounter(TorchDispatchMode):
    """Counts live tensor storages: `events` holds (key, bytes) when a storage appears, (key, None) when it is freed;
    `current` and `peak` are in bytes. Storages made outside the mode are counted with `track`."""

    def __init__(self):
        super().__init__()
        self.sizes, self.events = {}, []
        self.current = self.peak = 0

    def track(self, tensor):
        """Count `tensor`'s storage unless it is counted already (views and in-place results share it)."""
        storage = tensor.untyped_storage()
        key = storage._cdata  # the C++ storage's address: stable while it lives, freed keys leave `sizes` first
        if key in self.sizes:
            return
        nbytes = storage.nbytes()
        self.sizes[key] = nbytes
        self.events.append((key, nbytes))
        self.current += nbytes
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._freed, key)

    def _freed(self, key):
        self.current -= self.sizes.pop(key)
        self.events.append((key, None))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_leaves(out):
            if isinstance(value, torch.Tensor):
                self.track(value)
        return out


class ShapeOnlyDataLoaders:
    """What `build_learner` reads from fastai DataLoaders (vocab, device, path), without data."""

    def __init__(self, vocab):
        self.vocab, self.device, self.path = vocab, torch.device("cpu"), Path(".")


def stub_vocab(vocabs, targets):
    """The `dls.vocab` fastai would have: one target's classes, or one list of classes per target."""
    lists = [list(vocabs[t]) for t in targets]
    return lists[0] if len(targets) == 1 else lists


def apply_order(module):
    """Parameters and buffers in the order `Module.to(device)` copies them: children first, then the module's own."""
    for child in module.children():
        yield from apply_order(child)
    yield from (p for p in module._parameters.values() if p is not None)
    yield from (b for b in module._buffers.values() if b is not None)


def plain_loss(loss_func, pred, targets):
    """The learner's loss on fake tensors: fastai's flattened losses wrap their inputs in TensorBase, which cannot wrap
    a FakeTensor, so call the wrapped torch loss on the same flattened views (no copy either way)."""
    if isinstance(loss_func, BaseLoss):
        flat = [t.view(-1) for t in targets] if loss_func.flatten else list(targets)
        return loss_func.func(pred.view(-1, pred.shape[-1]) if loss_func.flatten else pred, *flat)
    return loss_func(pred, *targets)


class StepTracer:
    """The kit's learner for `config` on fake tensors, and the storages its training actions allocate and free."""

    def __init__(self, config, vocabs):
        """Build the learner on the meta device and move it to fake tensors; its parameters are the first events."""
        self.config = config.replace(pretrained=False)  # random init: nothing to download, nothing to copy
        self.fake = FakeTensorMode(allow_non_fake_inputs=True)  # meta parameters become fake ones below
        self.counter = StorageCounter()
        with torch.device("meta"):
            self.learn = build_learner(ShapeOnlyDataLoaders(stub_vocab(vocabs, self.config.targets)), self.config,
                                       device="cpu")
        with self.fake:
            self.learn.model.to_empty(device="cpu")
            self.learn.unfreeze()  # what the probe trains: every layer (creates the fastai optimizer, no state yet)
            self.learn.model.train()
            for tensor in apply_order(self.learn.model):
                self.counter.track(tensor)

    def batch(self, micro_bs):
        """One training micro-batch as fastai runs it with MixedPrecision: forward and loss under autocast, prediction
        cast to float32, the scaled loss's backward (gradients accumulate into .grad). Returns its events."""
        start = len(self.counter.events)
        with self.fake, self.counter:
            xb = torch.empty(micro_bs, 3, *self.config.size)
            targets = [torch.empty(micro_bs, dtype=torch.long) for _ in self.config.targets]
            with cuda_autocast():
                pred = self.learn.model(xb).float()
                loss = plain_loss(self.learn.loss_func, pred, targets)
            (loss * LOSS_SCALE).backward()
            del xb, targets, pred, loss
        return self.counter.events[start:]

    def step(self):
        """fastai's optimizer step (its Adam creates two float32 moments per parameter on the first) and its
        zero_grad, which keeps the gradients allocated. GradScaler's unscale is in place: nothing to count."""
        start = len(self.counter.events)
        with self.fake, self.counter:
            self.learn.opt.step()
            self.learn.opt.zero_grad()
        return self.counter.events[start:]

    def prime_gradients(self):
        """Gradients as a first backward leaves them (allocated last layer first), without running one."""
        start = len(self.counter.events)
        with self.fake, self.counter:
            for param in reversed(list(self.learn.model.parameters())):
                if param.requires_grad and param.grad is None:
                    param.grad = torch.zeros_like(param)
        return self.counter.events[start:]
