"""Data beyond RAM: the folder cache as memory-mapped .npy files, and data_memory='disk' batches
bitwise equal to 'ram' ones, per rank, reading only each rank's own rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnkit.data import Augment, DeviceLoader, Split, open_source, split_validation
from cnnkit.data.dataset import RowView, shard_bounds
from cnnkit.data.loader import memory_mode
from cnnkit.errors import ConfigError
from data_helpers import isolated_env, make_folder  # noqa: F401

AUGMENTS = [
    Augment(),
    Augment(translate=2),
    Augment(crop=3, flip=True, cutout=4),
    Augment(flip=True),
]


def _memmap_split(tmp_path, n: int = 60, size: int = 10, channels: int = 3) -> Split:
    """A split whose images are a read-only memory map, labels = index to trace every sample."""
    images = np.random.default_rng(1).integers(0, 256, (n, size, size, channels), np.uint8)
    np.save(tmp_path / "images.npy", images)
    return Split(np.load(tmp_path / "images.npy", mmap_mode="r"), np.arange(n, dtype=np.int64))


def _loader(split: Split, **kwargs) -> DeviceLoader:
    channels = split.images.shape[-1]
    defaults = dict(batch_size=8, mean=[0.5] * channels, std=[0.25] * channels, seed=3)
    return DeviceLoader(split, **(defaults | kwargs))


def _batches(loader: DeviceLoader, epoch: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.epoch(epoch))


@pytest.mark.parametrize("augment", AUGMENTS, ids=str)
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_disk_batches_are_bitwise_the_ram_batches(tmp_path, augment, world_size):
    split = _memmap_split(tmp_path)
    for rank in range(world_size):
        options = dict(augment=augment, rank=rank, world_size=world_size)
        ram = _loader(split, data_memory="ram", **options)
        disk = _loader(split, data_memory="disk", **options)
        assert (ram.data_memory, disk.data_memory) == ("ram", "disk")
        for (x, y), (dx, dy) in zip(_batches(ram), _batches(disk), strict=True):
            assert torch.equal(x, dx) and torch.equal(y, dy)


class _Recorder:
    """An array-like that records every index it is asked for (the loader's reads from disk)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.reads = array, array.shape, []

    def __getitem__(self, key):
        self.reads.append(np.asarray(key).copy())
        return self.array[key]


def test_each_rank_reads_only_its_own_rows_sorted_once_per_batch(tmp_path):
    split = _memmap_split(tmp_path)
    for rank in range(2):
        recorder = _Recorder(split.images)
        loader = _loader(Split(recorder, split.labels), data_memory="disk", rank=rank, world_size=2)
        order = loader.order(0)
        list(loader.epoch(0))
        assert len(recorder.reads) == len(loader)  # one read per batch
        for index, read in enumerate(recorder.reads):
            start, stop = shard_bounds(8, rank, 2)
            mine = order[index * 8 : (index + 1) * 8][start:stop].numpy()
            assert read.tolist() == sorted(mine.tolist())


def test_a_validation_split_of_a_memory_map_stays_on_disk(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 12, "b": 12})
    dataset = open_source(str(root), progress=False)
    assert isinstance(dataset.splits["train"].images, np.memmap)
    train, val = split_validation(dataset, 0.25, seed=0)
    assert isinstance(train.images, RowView) and isinstance(val.images, RowView)
    whole = np.asarray(dataset.splits["train"].images)
    assert np.array_equal(np.asarray(val.images), whole[val.images.index])
    ram = _loader(train, data_memory="ram", augment=Augment(translate=2), mean=[0.5], std=[0.2])
    disk = _loader(train, data_memory="disk", augment=Augment(translate=2), mean=[0.5], std=[0.2])
    for (x, y), (dx, dy) in zip(_batches(ram), _batches(disk), strict=True):
        assert torch.equal(x, dx) and torch.equal(y, dy)


def test_the_folder_cache_is_npy_per_split_and_memory_mapped(tmp_path):
    make_folder(tmp_path / "d" / "train", {"a": 3, "b": 2})
    make_folder(tmp_path / "d" / "test", {"a": 1, "b": 1})
    first = open_source(str(tmp_path / "d"), progress=False)
    files = sorted(p.name.split(".", 1)[1] for p in (tmp_path / "cache" / "folders").iterdir())
    assert files == [
        "json",
        "test.images.npy",
        "test.labels.npy",
        "train.images.npy",
        "train.labels.npy",
    ]
    second = open_source(str(tmp_path / "d"), progress=False)  # from the cache
    for name in ("train", "test"):
        assert isinstance(second.splits[name].images, np.memmap)
        assert np.array_equal(first.splits[name].images, second.splits[name].images)
        assert first.splits[name].labels.tolist() == second.splits[name].labels.tolist()


def test_skipped_files_shrink_the_streamed_cache(tmp_path):
    root = make_folder(tmp_path / "s", {"a": 3, "b": 3})
    (root / "a" / "bad.png").write_bytes(b"not a png")
    first = open_source(str(root), progress=False)
    second = open_source(str(root), progress=False)
    assert (
        first.splits["train"].images.shape == second.splits["train"].images.shape == (6, 12, 12, 1)
    )
    assert np.array_equal(first.splits["train"].images, second.splits["train"].images)
    assert [s["path"].rsplit("/", 1)[1] for s in second.skipped] == ["bad.png"]
    assert not [p for p in (tmp_path / "cache").rglob("*part*")]


def test_an_unwritable_cache_decodes_into_memory(tmp_path, monkeypatch):
    import cnnkit.data.folder as folder

    class Refused(folder.NpyWriter):
        def __init__(self, *args, **kwargs) -> None:
            raise PermissionError("read-only home")

    monkeypatch.setattr(folder, "NpyWriter", Refused)
    root = make_folder(tmp_path / "r", {"a": 2, "b": 2})
    dataset = open_source(str(root), progress=False)
    assert type(dataset.splits["train"].images) is np.ndarray and len(dataset.splits["train"]) == 4
    assert not list((tmp_path / "cache").rglob("*.json"))


@pytest.mark.parametrize(
    "mode, nbytes, budget, expected",
    [
        ("auto", 100, 200, "ram"),
        ("auto", 200, 200, "ram"),
        ("auto", 201, 200, "disk"),
        ("ram", 10**12, 200, "ram"),
        ("disk", 1, 200, "disk"),
    ],
)
def test_memory_mode(mode, nbytes, budget, expected):
    assert memory_mode(mode, nbytes, budget) == expected


def test_auto_goes_to_disk_past_half_the_available_memory(tmp_path, monkeypatch):
    import cnnkit.data.loader as loader

    split = _memmap_split(tmp_path, n=60, size=10, channels=3)  # 18,000 bytes
    monkeypatch.setattr(loader, "available_memory", lambda: 2 * 18_000)
    assert _loader(split).data_memory == "ram"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks on this machine share the budget
    assert _loader(split).data_memory == "disk"
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert _loader(split, augment=Augment(flip=True)).data_memory == "disk"  # 2 copies


def test_bad_data_memory():
    with pytest.raises(
        ConfigError,
        match=r"data_memory='ssd' is not known; use one of auto, ram, disk \(auto: ram when",
    ):
        memory_mode("ssd", 1)


def _train(tmp_path, root, name: str, memory: str, capsys) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from cnnkit import runs
    from cnnkit.cli import main

    out = tmp_path / name
    args = ["train", "--data", str(root), "--model", TINY_FOLDER, "--epochs", "2"]
    args += ["--batch-size", "8", "--val-split", "0.25", "--augment", "translate=1,flip"]
    args += ["--device", "cpu", "--quiet", "--out", str(out), "--data-memory", memory]
    assert main(args) == 0, capsys.readouterr().err
    return load_file(str(out / runs.WEIGHTS))


TINY_FOLDER = "12x12x1 > conv 4@3x3 same > bn > relu > flatten > fc 2"


def test_training_from_disk_gives_bitwise_the_weights_of_ram(tmp_path, capsys):
    root = make_folder(tmp_path / "t", {"a": 16, "b": 16})
    ram = _train(tmp_path, root, "ram", "ram", capsys)
    disk = _train(tmp_path, root, "disk", "disk", capsys)
    assert ram.keys() == disk.keys()
    assert all(torch.equal(ram[key], disk[key]) for key in ram)


def test_a_bad_data_memory_is_one_line_from_the_cli(tmp_path, capsys):
    from cnnkit.cli import main

    root = make_folder(tmp_path / "t", {"a": 4, "b": 4})
    args = ["train", "--data", str(root), "--model", TINY_FOLDER, "--batch-size", "4"]
    args += ["--data-memory", "ssd"]
    assert main([*args, "--device", "cpu", "--quiet", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data-memory 'ssd' is not known" in err


def test_a_full_cache_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import cnnkit.data.folder as folder
    from cnnkit.errors import DataError

    def full(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(folder.NpyWriter, "write", full)
    root = make_folder(tmp_path / "full", {"a": 2, "b": 2})
    with pytest.raises(
        DataError,
        match=r"folders: writing the decoded images of .*full failed \(No space left on device\); "
        r"free some space, or set CNNKIT_CACHE to a folder on another disk",
    ):
        open_source(str(root), progress=False)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
