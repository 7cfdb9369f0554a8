"""The storage counter and the CUDA autocast policy of the tracer, on hand-made op sequences."""

import torch
import torch.nn.functional as F

from paddy.probe.trace import CudaAutocast, StorageCounter


def test_counter_gives_the_exact_bytes_of_a_hand_made_sequence():
    with StorageCounter() as counter:
        a = torch.empty(1000)  # 4000 bytes
        b = a + 1  # 4000 more
        view = b.view(10, 100)  # a view shares b's storage: nothing new
        a.add_(1)  # in place: nothing new
        del b  # the view keeps the storage alive
        assert counter.current == 8000
        del view
        assert counter.current == 4000
        half = a.half()  # 2000 bytes
        del a, half
    assert counter.current == 0 and counter.peak == 8000
    sizes = [n for _, n in counter.events]
    assert sizes == [4000, 4000, None, 2000, None, None]


def test_counter_sees_autograd_saved_tensors_and_gradients():
    x = torch.empty(10, requires_grad=True)  # made outside the mode: counted by track
    with StorageCounter() as counter:
        counter.track(x)
        y = (x * 2).exp().sum()  # x*2 is freed (exp saves its result), exp's 40 bytes saved, sum's 4 bytes
        assert counter.current == 40 + 40 + 4
        y.backward()  # the graph goes; x.grad (40 bytes) stays
        del y
    assert counter.current == 40 + 40 and x.grad is not None


def test_cuda_autocast_runs_matmuls_in_half_and_cudas_float32_list_in_float():
    x = torch.randn(4, 8)
    weight = torch.randn(8, 8, requires_grad=True)
    with CudaAutocast() as autocast:
        h = F.linear(x, weight)
        assert h.dtype == torch.float16
        assert F.layer_norm(h, (8,)).dtype == torch.float32  # CPU autocast alone leaves it in float16
        assert h.softmax(-1).dtype == torch.float32 and h.sum().dtype == torch.float32
        assert F.gelu(h).dtype == torch.float16  # on neither list: follows its input
        again = F.linear(h.float(), weight)
        assert again.dtype == torch.float16 and len(autocast.cache) == 1  # the weight's cast is cached, reused
    assert not autocast.cache  # and dropped when the region ends
