"""DeviceLoader: normalisation, each augmentation against a NumPy reference, and resumable determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnkit.data import Augment, DeviceLoader, Split, channel_stats, parse_augment
from cnnkit.data.dataset import shard_bounds, shard_split
from cnnkit.errors import ConfigError
from data_helpers import isolated_env  # noqa: F401


def _split(n: int = 50, size: int = 8, channels: int = 1) -> Split:
    images = np.random.default_rng(0).integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    return Split(images, np.arange(n, dtype=np.int64))  # label = index, to trace every sample


def _loader(split: Split, **kwargs) -> DeviceLoader:
    channels = split.images.shape[-1]
    defaults = dict(batch_size=8, mean=[0.5] * channels, std=[0.25] * channels, seed=7)
    return DeviceLoader(split, **(defaults | kwargs))


def _normalise(images: np.ndarray) -> np.ndarray:
    """NHWC uint8 -> NCHW float, (x/255 - 0.5) / 0.25 computed in float64 as the reference."""
    return ((images / 255.0 - 0.5) / 0.25).transpose(0, 3, 1, 2)


AUGMENTS = [
    Augment(),
    Augment(translate=2),
    Augment(translate=1, flip=True),
    Augment(crop=3, cutout=4),
    Augment(flip=True, cutout=3),
]


@pytest.mark.parametrize("augment", AUGMENTS, ids=str)
def test_resumed_epoch_is_bitwise_the_same(augment):
    split = _split()
    whole = list(_loader(split, augment=augment).epoch(3))
    resumed = list(_loader(split, augment=augment).epoch(3, start_batch=4))  # a fresh process
    assert len(whole) == 6 and len(resumed) == 2
    for (x, y), (rx, ry) in zip(whole[4:], resumed, strict=True):
        assert torch.equal(x, rx) and torch.equal(y, ry)


def test_epochs_and_seeds_differ_and_each_epoch_is_a_permutation():
    split = _split()
    loader = _loader(split, drop_last=False)
    orders = [torch.cat([y for _, y in loader.epoch(e)]) for e in (0, 1)]
    assert sorted(orders[0].tolist()) == list(range(50))
    assert not torch.equal(orders[0], orders[1])
    other_seed = torch.cat([y for _, y in _loader(split, drop_last=False, seed=8).epoch(0)])
    assert not torch.equal(orders[0], other_seed)


def test_drop_last_and_final_partial_batch():
    split = _split(n=50)
    assert len(_loader(split)) == 6  # 50 // 8
    evaluation = _loader(split, shuffle=False, drop_last=False)
    batches = list(evaluation.epoch(0))
    assert len(evaluation) == len(batches) == 7 and len(batches[-1][1]) == 2
    assert torch.cat([y for _, y in batches]).tolist() == list(range(50))


def test_plain_batches_are_normalised_images_in_order():
    split = _split(channels=3)
    x, y = next(_loader(split, shuffle=False).epoch(0))
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_allclose(x.numpy(), _normalise(split.images[:8]), rtol=1e-5, atol=1e-5)


def _draws(loader: DeviceLoader, epoch: int, index: int, batch: int):
    """Replay the loader's random draws for one batch, in its documented order."""
    generator = loader.generator(epoch, index)
    top = left = np.full(batch, loader.pad)
    if loader.pad:
        top, left = torch.randint(0, 2 * loader.pad + 1, (2, batch), generator=generator).numpy()
    flip = np.zeros(batch, bool)
    if loader.augment.flip:
        flip = (torch.rand(batch, generator=generator) < 0.5).numpy()
    return top, left, flip


@pytest.mark.parametrize(
    "augment, mode",
    [
        (Augment(translate=2), "constant"),
        (Augment(crop=2, flip=True), "reflect"),
        (Augment(flip=True), None),
    ],
    ids=str,
)
def test_shift_and_flip_match_a_numpy_reference(augment, mode):
    split = _split(channels=3)
    loader = _loader(split, augment=augment)
    rows = loader.order(2)[8:16].numpy()
    x, y = list(loader.epoch(2))[1]
    assert y.numpy().tolist() == rows.tolist()
    top, left, flip = _draws(loader, 2, 1, 8)
    p = loader.pad
    padded = (
        np.pad(split.images, ((0, 0), (p, p), (p, p), (0, 0)), mode=mode) if p else split.images
    )
    expected = np.stack(
        [
            (padded[r, :, ::-1] if f else padded[r])[t : t + 8, c : c + 8]
            for r, t, c, f in zip(rows, top, left, flip, strict=True)
        ]
    )
    np.testing.assert_allclose(x.numpy(), _normalise(expected), rtol=1e-5, atol=1e-5)
    if augment.translate:
        assert set(np.abs(top - p)) | set(np.abs(left - p)) <= {0, 1, 2}


def test_cutout_zeroes_at_most_one_square_per_image():
    split = _split(n=64, size=16)
    plain = torch.cat([x for x, _ in _loader(split, batch_size=64).epoch(0)])
    cut = torch.cat(
        [x for x, _ in _loader(split, batch_size=64, augment=Augment(cutout=5)).epoch(0)]
    )
    changed = (plain != cut).flatten(1).sum(1)
    assert (cut[plain != cut] == 0).all()  # cutout writes the mean: zero after normalisation
    assert changed.max() <= 25 and changed.float().mean() > 5


def test_channels_last_and_bfloat16():
    split = _split(channels=3)
    x, _ = next(_loader(split, channels_last=True, dtype="bfloat16").epoch(0))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    x, _ = next(_loader(split).epoch(0))
    assert x.is_contiguous()


def test_stats_from_the_split_give_zero_mean_unit_std():
    split = _split(n=200, channels=3)
    mean, std = channel_stats(split.images)
    x = torch.cat([x for x, _ in DeviceLoader(split, batch_size=200, mean=mean, std=std).epoch(0)])
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_read_only_arrays_are_accepted():
    split = _split()
    split.images.flags.writeable = False  # IDX files parsed from bytes are read-only
    assert len(list(_loader(split).epoch(0))) == 6


# --- data parallel: shards of one global batch --------------------------------------------------
@pytest.mark.parametrize("augment", AUGMENTS, ids=str)
@pytest.mark.parametrize("world_size, drop_last", [(2, True), (3, True), (3, False), (8, True)])
def test_the_union_of_the_shards_is_bitwise_the_batch_of_one_process(
    augment, world_size, drop_last
):
    split = _split(n=50, channels=3)
    one = list(_loader(split, augment=augment, drop_last=drop_last).epoch(1))
    ranks = [
        list(
            _loader(
                split, augment=augment, drop_last=drop_last, rank=r, world_size=world_size
            ).epoch(1)
        )
        for r in range(world_size)
    ]
    assert all(len(batches) == len(one) for batches in ranks)  # the same steps on every rank
    for index, (x, y) in enumerate(one):
        shards = [batches[index] for batches in ranks]
        sizes = [len(sy) for _, sy in shards]
        assert max(sizes) - min(sizes) <= 1  # 8 over 3 ranks: 2, 3, 3
        assert torch.equal(torch.cat([sx for sx, _ in shards]), x)
        assert torch.equal(torch.cat([sy for _, sy in shards]), y)


@pytest.mark.parametrize(
    "count, world_size, expected",
    [
        (8, 1, [(0, 8)]),
        (8, 2, [(0, 4), (4, 8)]),
        (8, 3, [(0, 2), (2, 5), (5, 8)]),
        (10, 4, [(0, 2), (2, 5), (5, 7), (7, 10)]),
        (2, 3, [(0, 0), (0, 1), (1, 2)]),
    ],
)
def test_shard_bounds_are_contiguous_and_differ_by_at_most_one(count, world_size, expected):
    assert [shard_bounds(count, r, world_size) for r in range(world_size)] == expected


def test_validation_shards_sum_to_the_whole_split():
    split = _split(n=23)
    shards = [shard_split(split, r, 4) for r in range(4)]
    assert sum(len(s) for s in shards) == 23
    assert np.array_equal(np.concatenate([s.images for s in shards]), split.images)
    assert np.concatenate([s.labels for s in shards]).tolist() == list(range(23))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(world_size=0), r"world_size=0 must be a whole number >= 1, e\.g\. 2"),
        (dict(rank=2, world_size=2), r"rank=2 must be a whole number from 0 to world_size - 1 = 1"),
        (dict(rank=-1, world_size=2), r"rank=-1 must be a whole number from 0 to"),
        (
            dict(batch_size=2, world_size=4),
            r"batch_size=2 is the global batch, smaller than world_size=4, so some rank gets no "
            r"image; use a batch of at least 4",
        ),
    ],
)
def test_bad_ranks(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _loader(_split(), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), r"batch_size=0 must be a positive whole number"),
        (
            dict(batch_size=64),
            r"batch_size=64 is larger than the split's 50 images, so with drop_last",
        ),
        (
            dict(mean=[0.5, 0.5]),
            r"mean=\[0\.5, 0\.5\] and std=\[0\.25\] must have one value per channel \(1\)",
        ),
        (dict(std=[0.0]), r"std must be positive"),
        (dict(device="cuda"), r"device='cuda' but CUDA is not available here"),
        (dict(dtype="int8"), r"dtype='int8' must be one of float32, bfloat16, float16"),
        (dict(augment=Augment(translate=8)), r"a shift of 8 px is not smaller than the 8x8 images"),
    ],
)
def test_bad_loader_arguments(kwargs, match):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match=match):
        _loader(_split(), **kwargs)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("none", Augment()),
        ("", Augment()),
        ("translate=2", Augment(translate=2)),
        ("translate=2, flip, cutout=8", Augment(translate=2, flip=True, cutout=8)),
        ("crop=4,flip=false", Augment(crop=4)),
    ],
)
def test_parse_augment(text, expected):
    assert parse_augment(text) == expected
    assert parse_augment(str(expected)) == expected  # str() is the same notation


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "rotate=10",
            r"--augment 'rotate=10': unknown augmentation 'rotate'; use translate=N, flip, crop=N, cutout=N, jitter=F, or none",
        ),
        (
            "translate=two",
            r"translate needs a whole number of pixels, got 'two'; use e\.g\. translate=2",
        ),
        ("cutout=-1", r"cutout=-1 must not be negative"),
        ("flip=maybe", r"flip='maybe' must be true or false"),
        ("translate=2,crop=4", r"translate=2 and crop=4: both shift the image .* choose one"),
    ],
)
def test_parse_augment_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_augment(text)
