"""A replay of PyTorch's CUDA caching allocator: the allocated and reserved peaks a sequence of allocations and frees
would reach on a GPU.

The rules are those of c10/cuda/CUDACachingAllocator.cpp (native backend, default settings: no max_split_size, no
expandable segments, one stream): sizes round up to 512 bytes; requests up to 1 MiB come from 2 MiB segments (the
small pool), requests up to 10 MiB from 20 MiB segments, larger ones from segments rounded up to 2 MiB; a request
takes the smallest cached block that fits, split only when the rest is worth keeping (any rest in the small pool,
over 1 MiB in the large); freed blocks merge with free neighbours of their segment; segments are never returned.
"Allocated" counts whole blocks, so an unsplit remainder counts too, as torch.cuda.max_memory_allocated does.
"""

import bisect
from dataclasses import dataclass

MIN_BLOCK = 512
SMALL_SIZE = 1 << 20  # largest request served from the small pool
SMALL_SEGMENT = 2 << 20
MIN_LARGE_ALLOC = 10 << 20  # requests below this share 20 MiB segments
LARGE_SEGMENT = 20 << 20
ROUND_LARGE = 2 << 20


def round_size(nbytes):
    """The bytes the allocator hands out for a request: at least 512, a multiple of 512."""
    return MIN_BLOCK if nbytes < MIN_BLOCK else -(-nbytes // MIN_BLOCK) * MIN_BLOCK


def segment_size(size):
    """The bytes cudaMalloc'ed for a new segment when no cached block fits `size`."""
    if size <= SMALL_SIZE:
        return SMALL_SEGMENT
    if size < MIN_LARGE_ALLOC:
        return LARGE_SEGMENT
    return -(-size // ROUND_LARGE) * ROUND_LARGE


class _Block:
    __slots__ = ("size", "addr", "small", "prev", "next", "free")

    def __init__(self, size, addr, small):
        self.size, self.addr, self.small = size, addr, small
        self.prev = self.next = None
        self.free = True

    def key(self):
        return (self.size, self.addr)


@dataclass(frozen=True)
class AllocatorPeaks:
    """Peak allocated and peak reserved bytes of a replay."""

    allocated: int
    reserved: int


class CachingAllocator:
    """The allocator's block bookkeeping, without memory: malloc(key, nbytes) and free(key)."""

    def __init__(self):
        self._pools = {True: [], False: []}  # per pool, free blocks sorted by (size, address)
        self._blocks = {}  # (size, address) of a free block -> block
        self._live = {}  # key -> allocated block
        self._next_address = 0
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0

    def malloc(self, key, nbytes):
        """Serve a request of `nbytes` for `key` from a cached block, else from a new segment."""
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        block = self._take_free(size, small) or self._new_segment(size, small)
        rest = block.size - size
        if rest >= MIN_BLOCK if small else rest > SMALL_SIZE:
            self._split(block, size)
        block.free = False
        self._live[key] = block
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)

    def free(self, key):
        """Return `key`'s block to its pool, merged with free neighbours."""
        block = self._live.pop(key)
        block.free = True
        self.allocated -= block.size
        for neighbour in (block.prev, block.next):
            if neighbour is not None and neighbour.free:
                self._merge(block, neighbour)
        self._add_free(block)

    def _take_free(self, size, small):
        pool = self._pools[small]
        index = bisect.bisect_left(pool, (size, -1))
        if index == len(pool):
            return None
        return self._blocks.pop(pool.pop(index))

    def _new_segment(self, size, small):
        nbytes = segment_size(size)
        block = _Block(nbytes, self._next_address, small)
        self._next_address += nbytes
        self.reserved += nbytes
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        return block

    def _split(self, block, size):
        rest = _Block(block.size - size, block.addr + size, block.small)
        rest.prev, rest.next = block, block.next
        if block.next is not None:
            block.next.prev = rest
        block.next, block.size = rest, size
        self._add_free(rest)

    def _merge(self, block, neighbour):
        self._remove_free(neighbour)
        if neighbour is block.prev:
            block.addr, block.prev = neighbour.addr, neighbour.prev
            if neighbour.prev is not None:
                neighbour.prev.next = block
        else:
            block.next = neighbour.next
            if neighbour.next is not None:
                neighbour.next.prev = block
        block.size += neighbour.size

    def _add_free(self, block):
        bisect.insort(self._pools[block.small], block.key())
        self._blocks[block.key()] = block

    def _remove_free(self, block):
        pool = self._pools[block.small]
        del pool[bisect.bisect_left(pool, block.key())]
        del self._blocks[block.key()]


def replay(events):
    """Peaks of the caching allocator over `events`: (key, nbytes) allocates, (key, None) frees; 0 bytes and frees of
    unknown keys are ignored (the allocator hands out no block for an empty storage)."""
    allocator, live = CachingAllocator(), set()
    for key, nbytes in events:
        if nbytes is None:
            if key in live:
                live.discard(key)
                allocator.free(key)
        elif nbytes > 0:
            live.add(key)
            allocator.malloc(key, nbytes)
    return AllocatorPeaks(allocated=allocator.peak_allocated, reserved=allocator.peak_reserved)
