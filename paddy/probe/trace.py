"""Trace training steps of the kit's learner on the meta device: every storage the step allocates and frees, in order.

No GPU and no real memory: the learner is built by `build_learner` on the meta device (tensors with shapes, dtypes and
storages but no data; random init is skipped, nothing is downloaded). A `TorchDispatchMode` sees every ATen op's
outputs and logs each new storage and, through a weakref finalizer, the moment Python frees it: parameters, gradients,
optimizer state, activations saved for backward, autocast copies and temporaries, as the CUDA caching allocator sees
them. (Fake CUDA tensors cannot run backward without a driver, and FakeTensorMode on CPU gave the same storages as
this, about 2.5 times slower.)

CUDA autocast's policy is applied by `CudaAutocast` at the level of torch functions, from the op lists in torch's
AMP documentation, and scaled_dot_product_attention runs as a fused flash kernel, as it does on a GPU in float16.
"""

import weakref
from pathlib import Path

import torch
from fastai.losses import BaseLoss
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

from paddy.vision.learner import build_learner

# CUDA autocast's float32 list, as torch's AMP docs name it ("CUDA Ops that can autocast to float32").
FP32_OPS = frozenset({
    "__pow__", "__rdiv__", "__rpow__", "__rtruediv__", "acos", "asin", "binary_cross_entropy_with_logits", "cosh",
    "cosine_embedding_loss", "cdist", "cosine_similarity", "cross_entropy", "cumprod", "cumsum", "dist", "erfinv",
    "exp", "expm1", "group_norm", "hinge_embedding_loss", "kl_div", "l1_loss", "layer_norm", "log", "log_softmax",
    "log10", "log1p", "log2", "margin_ranking_loss", "mse_loss", "multilabel_margin_loss", "multi_margin_loss",
    "nll_loss", "norm", "normalize", "pdist", "poisson_nll_loss", "pow", "prod", "reciprocal", "rsqrt", "sinh",
    "smooth_l1_loss", "soft_margin_loss", "softmax", "softmin", "softplus", "sum", "renorm", "tan",
    "triplet_margin_loss"})
# CUDA autocast's float16 list ("CUDA Ops that can autocast to float16"), with the Python names they are called by.
FP16_OPS = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "prelu",
    "addmm", "addmv", "addr", "matmul", "__matmul__", "__rmatmul__", "einsum", "mm", "mv", "linear", "addbmm",
    "baddbmm", "bmm", "chain_matmul", "linalg_multi_dot", "scaled_dot_product_attention"})
LOSS_SCALE = 65536.0  # GradScaler's initial scale: the loss is multiplied by it before backward


def _is_half(value):
    return isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16)


def _is_float32(value):
    return isinstance(value, torch.Tensor) and value.dtype == torch.float32


class CudaAutocast(TorchFunctionMode):
    """CUDA float16 autocast at the level of torch functions: the float16 list runs on float16 copies of its float32
    inputs (a parameter's copy cached until the region ends, as autocast caches weight casts), the float32 list on
    float32 copies of its half inputs; everything else follows its inputs' types."""

    def __init__(self):
        super().__init__()
        self.cache = {}  # id(parameter) -> (parameter, its float16 copy)

    def _half(self, value):
        if not _is_float32(value):
            return value
        if not (value.is_leaf and value.requires_grad):
            return value.half()
        if id(value) not in self.cache:
            self.cache[id(value)] = (value, value.half())
        return self.cache[id(value)][1]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "scaled_dot_product_attention":
            func = flash_attention
        if name in FP16_OPS:
            args, kwargs = tree_map(self._half, args), tree_map(self._half, kwargs)
        elif name in FP32_OPS:
            args, kwargs = tree_map(_to_float32, args), tree_map(_to_float32, kwargs)
        return func(*args, **kwargs)

    def __exit__(self, *exc):
        self.cache.clear()  # the weight-cast cache lives as long as the outermost autocast region
        return super().__exit__(*exc)


def flash_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    """scaled_dot_product_attention as a GPU runs it in float16: a fused kernel that keeps the log-sum-exp, never the
    attention matrix (on meta tensors torch would pick the math path, which materialises it)."""
    out, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    return out


def _to_float32(value):
    return value.float() if _is_half(value) else value


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
    """The learner's loss, as fastai computes it: its flattened losses call the wrapped torch loss on flattened views
    (called here directly, without fastai's TensorBase wrapping, which tracing does not need)."""
    if isinstance(loss_func, BaseLoss):
        flat = [t.view(-1) for t in targets] if loss_func.flatten else list(targets)
        return loss_func.func(pred.view(-1, pred.shape[-1]) if loss_func.flatten else pred, *flat)
    return loss_func(pred, *targets)


class StepTracer:
    """The kit's learner for `config` on the meta device, and the storages its training actions allocate and free."""

    def __init__(self, config, vocabs):
        """Build the learner on the meta device; its parameters and buffers are the first events."""
        self.config = config.replace(pretrained=False)  # random init: nothing to download, nothing to copy
        self.counter = StorageCounter()
        with torch.device("meta"):
            self.learn = build_learner(ShapeOnlyDataLoaders(stub_vocab(vocabs, self.config.targets)), self.config,
                                       device="cpu")
            self.learn.unfreeze()  # what the probe trains: every layer (creates the fastai optimizer, no state yet)
        self.learn.model.train()
        for tensor in apply_order(self.learn.model):
            self.counter.track(tensor)

    def batch(self, micro_bs):
        """One training micro-batch as fastai runs it with MixedPrecision: forward and loss under autocast, prediction
        cast to float32, the scaled loss's backward (gradients accumulate into .grad). Returns its events."""
        start = len(self.counter.events)
        with torch.device("meta"), self.counter:
            xb = torch.empty(micro_bs, 3, *self.config.size)
            targets = [torch.empty(micro_bs, dtype=torch.long) for _ in self.config.targets]
            with CudaAutocast():
                pred = self.learn.model(xb).float()
                loss = plain_loss(self.learn.loss_func, pred, targets)
            (loss * LOSS_SCALE).backward()
            del xb, targets, pred, loss
        return self.counter.events[start:]

    def step(self):
        """fastai's optimizer step (its Adam creates two float32 moments per parameter on the first) and its
        zero_grad, which keeps the gradients allocated. GradScaler's unscale is in place: nothing to count."""
        start = len(self.counter.events)
        with torch.device("meta"), self.counter:
            self.learn.opt.step()
            self.learn.opt.zero_grad()
        return self.counter.events[start:]

    def prime_gradients(self):
        """Gradients as a first backward leaves them (allocated last layer first), without running one."""
        start = len(self.counter.events)
        with torch.device("meta"), self.counter:
            for param in reversed(list(self.learn.model.parameters())):
                if param.requires_grad and param.grad is None:
                    param.grad = torch.zeros_like(param)
        return self.counter.events[start:]
