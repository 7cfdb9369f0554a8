"""The caching-allocator replay: rounding, pools, segment sizes, unsplit remainders, merging."""

from paddy.probe.allocator import CachingAllocator, replay, round_size, segment_size

MIB = 2**20


def test_round_size_and_segment_size():
    assert round_size(1) == 512 and round_size(512) == 512 and round_size(513) == 1024
    assert segment_size(512) == 2 * MIB and segment_size(MIB) == 2 * MIB
    assert segment_size(MIB + 512) == 20 * MIB and segment_size(10 * MIB - 512) == 20 * MIB
    assert segment_size(10 * MIB) == 10 * MIB and segment_size(30 * MIB + 512) == 32 * MIB


def test_small_and_mid_requests_share_segments():
    peaks = replay([("a", 100), ("b", 600_000), ("c", 5 * MIB), ("d", 5 * MIB)])
    assert peaks.allocated == 512 + round_size(600_000) + 10 * MIB
    assert peaks.reserved == 2 * MIB + 20 * MIB  # one small segment, one 20 MiB segment


def test_an_unsplit_remainder_counts_as_allocated():
    allocator = CachingAllocator()
    allocator.malloc("a", 12 * MIB)
    allocator.free("a")
    allocator.malloc("b", 11 * MIB + MIB // 2)  # the 12 MiB block's 0.5 MiB rest is not worth a split
    assert allocator.allocated == 12 * MIB and allocator.reserved == 12 * MIB


def test_freed_neighbours_merge_and_serve_a_larger_request():
    allocator = CachingAllocator()
    for key in "abcd":
        allocator.malloc(key, 5 * MIB)  # 20 MiB segment, four blocks
    allocator.free("b")
    allocator.free("c")
    allocator.malloc("e", 10 * MIB)  # b and c merged: no new segment
    assert allocator.reserved == 20 * MIB and allocator.allocated == 20 * MIB


def test_replay_ignores_empty_storages_and_unknown_frees():
    assert replay([("a", 0), ("a", None), ("z", None)]).allocated == 0
