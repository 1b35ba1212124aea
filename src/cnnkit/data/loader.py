"""DeviceLoader: a whole split held on the device as uint8, batched and augmented there.

Following airbench, there is no per-sample Dataset/DataLoader: one batch is one gather from the
uint8 tensor, a few tensor operations for augmentation, and one normalisation. Keeping uint8
(not float) on the device costs a quarter of the memory, and converting 512 images per batch is
cheaper than the gather itself.

Every random choice is a pure function of (seed, epoch, batch index): the permutation comes from
a generator seeded by (seed, epoch) and each batch's augmentation from one seeded by
(seed, epoch, batch). A run resumed at (epoch, start_batch) sees bitwise the same batches as an
uninterrupted one, on the same machine and device.

Data parallel: with `world_size` ranks, every rank draws the same permutation and the same
augmentation for the whole global batch, and keeps the contiguous shard `shard_bounds` gives it.
The union of the shards is therefore bitwise the batch of one process, whatever the world size.

A split larger than the memory budget (`data_memory`) stays on the host, usually memory-mapped
from a folder's cache: each batch is one read of its rank's rows, sorted, then goes to the device
where it is padded, flipped and normalised as the whole split is in RAM, so both are bitwise equal.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from cnnkit.budgets import available_memory
from cnnkit.data.augment import Augment
from cnnkit.data.dataset import Split, shard_bounds
from cnnkit.errors import ConfigError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MEMORY_MODES = ("auto", "ram", "disk")


def normalisation(
    mean: Sequence[float], std: Sequence[float], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, bias), each (C,), so that u8 * scale + bias = (u8/255 - mean) / std in one pass."""
    from cnnkit.preprocess import scale_and_bias  # one home, shared with the ONNX predictor

    scale, bias = scale_and_bias(mean, std)
    return torch.from_numpy(scale).to(device), torch.from_numpy(bias).to(device)


def normalise(u8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) -> float32 (B, H, W, C); the one home of the arithmetic, so that
    prediction sees bitwise what training saw."""
    return u8.to(torch.float32).mul_(scale).add_(bias)


def derive_seed(*key: object) -> int:
    """A 63-bit seed from any key: stable across processes, unlike hash()."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def memory_mode(
    data_memory: str, nbytes: int, budget: int | None = None, device: torch.device | None = None
) -> str:
    """'ram' or 'disk' for `data_memory`: 'auto' is ram when `nbytes` fit `budget`.

    The default budget is half the memory available now, shared by the ranks on this machine
    (torchrun's LOCAL_WORLD_SIZE): each rank in RAM holds its own copy of the split. On a CUDA
    `device` the split is held there, so half of the device's free memory caps it too.
    """
    if data_memory not in MEMORY_MODES:
        raise ConfigError(
            f"data_memory={data_memory!r} is not known; use one of {', '.join(MEMORY_MODES)} "
            f"(auto: ram when the split fits half the available memory, else disk)"
        )
    if data_memory != "auto":
        return data_memory
    if budget is None:
        local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
        # No way to ask (neither Linux nor POSIX): assume 8 GiB.
        budget = (available_memory() or 2**33) // 2 // local_ranks
        if device is not None and device.type == "cuda":
            budget = min(budget, torch.cuda.mem_get_info(device)[0] // 2)
    return "ram" if nbytes <= budget else "disk"


@dataclass
class Draws:
    """One batch's random choices, one per sample: drawn for the whole global batch, then sliced
    per rank, so a sample's augmentation does not depend on the world size."""

    top: torch.Tensor  # (B,) first row of the crop in the padded image
    left: torch.Tensor  # (B,) first column
    flip: torch.Tensor | None  # (B,) bool, or None without flips
    centre: torch.Tensor | None  # (2, B) cutout centres in [0, 1), or None without cutout
    jitter: torch.Tensor | None = None  # (2, B) contrast and brightness draws in [-1, 1)

    def shard(self, start: int, stop: int) -> Draws:
        pick = lambda t: None if t is None else t[..., start:stop]  # noqa: E731
        return Draws(
            self.top[start:stop],
            self.left[start:stop],
            pick(self.flip),
            pick(self.centre),
            pick(self.jitter),
        )


class DeviceLoader:
    """Batches of one split on `device`: (x float (B, C, H, W) normalised, y int64 (B,)).

    `batch_size` is the global batch: rank `rank` of `world_size` gets its contiguous shard of
    each (sizes differ by at most 1 when world_size does not divide it; a rank's mean loss then
    weighs its shard size / batch_size). `data_memory` is auto, ram or disk (see memory_mode).

    >>> loader = DeviceLoader(split, batch_size=512, mean=[0.1307], std=[0.3081],
    ...                       augment=Augment(translate=2), seed=0)
    >>> for x, y in loader.epoch(0): ...
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        device: str | torch.device = "cpu",
        mean: Sequence[float],
        std: Sequence[float],
        augment: Augment = Augment(),  # noqa: B008 - frozen, so a shared default is safe
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype | str = torch.float32,
        rank: int = 0,
        world_size: int = 1,
        data_memory: str = "auto",
    ) -> None:
        self._check(split, batch_size, drop_last, mean, std, rank, world_size)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"device={str(device)!r} but CUDA is not available here; use device='cpu'"
            )
        chosen = _DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
        if not isinstance(chosen, torch.dtype) or not chosen.is_floating_point:
            raise ConfigError(f"dtype={dtype!r} must be one of {', '.join(_DTYPES)}")
        self.dtype: torch.dtype = chosen
        count, height, width, channels = split.images.shape
        # Shifts read from a copy padded once (zeros for translate, mirror for crop), so a
        # batch's gather, shift and flip are one indexing operation with no per-batch padding
        # (on disk, each batch read is padded alike: the same bytes, so the same batches).
        self.pad = augment.translate or augment.crop
        if self.pad >= min(height, width):
            raise ConfigError(
                f"augment {augment}: a shift of {self.pad} px is not smaller than the "
                f"{height}x{width} images; use at most {min(height, width) - 1}"
            )
        self.height, self.width, self.count = height, width, count
        self.batch_size, self.augment, self.shuffle = batch_size, augment, shuffle
        self.drop_last, self.seed, self.channels_last = drop_last, seed, channels_last
        self.rank, self.world_size = rank, world_size
        padded = (height + 2 * self.pad) * (width + 2 * self.pad) * channels
        nbytes = count * padded * (1 + augment.flip)
        self.data_memory = memory_mode(data_memory, nbytes, device=self.device)
        # ram: the store on the device (N or 2N, H+2p, W+2p, C) uint8; disk: the host's
        # (N, H, W, C) uint8, usually a memory map, read a batch at a time.
        self.images: torch.Tensor | np.ndarray = split.images
        if self.data_memory == "ram":
            self.images = self._to_device(split.images)
        self.labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64)).to(self.device)
        self.scale, self.bias = normalisation(mean, std, self.device)  # (C,) each

    @staticmethod
    def _check(split, batch_size, drop_last, mean, std, rank, world_size) -> None:
        count = len(split.labels)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(
                f"batch_size={batch_size!r} must be a positive whole number, e.g. 128"
            )
        if count == 0:
            raise ConfigError("the split is empty; a loader needs at least one image")
        if drop_last and batch_size > count:
            raise ConfigError(
                f"batch_size={batch_size} is larger than the split's {count} images, so with "
                f"drop_last every batch is dropped; use a batch size of at most {count}"
            )
        shard_bounds(batch_size, rank, world_size)  # checks rank and world_size
        if batch_size < world_size:
            raise ConfigError(
                f"batch_size={batch_size} is the global batch, smaller than world_size="
                f"{world_size}, so some rank gets no image; use a batch of at least {world_size}"
            )
        channels = split.images.shape[-1]
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ConfigError(
                f"mean={list(mean)} and std={list(std)} must have one value per channel "
                f"({channels}) and std must be positive"
            )

    def _to_device(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (n, H, W, C) on the host -> the store on the device: padded, and with flips the
        mirrored copy after the originals (n or 2n, H+2p, W+2p, C)."""
        out = images
        if self.pad:
            mode: Literal["reflect", "constant"] = "reflect" if self.augment.crop else "constant"
            out = np.pad(images, ((0, 0), (self.pad,) * 2, (self.pad,) * 2, (0, 0)), mode=mode)
        if self.augment.flip:
            # A mirrored copy beside the originals: a flip is then a choice of row, not a copy
            # per batch (torch.where on a flipped batch measured 4x the cost of the gather).
            out = np.concatenate([out, out[:, :, ::-1]])
        writable = isinstance(out, np.ndarray) and out.flags.writeable
        if out is images and (not writable or isinstance(out, np.memmap)):
            out = np.array(images)  # torch.from_numpy needs a writable array in RAM
        return torch.from_numpy(np.ascontiguousarray(out)).to(self.device)

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        count = self.count
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def generator(self, *key: object) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derive_seed(self.seed, *key))
        return generator

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's sample order (N,), the same on every rank."""
        if not self.shuffle:
            return torch.arange(self.count, device=self.device)
        return torch.randperm(self.count, generator=self.generator(epoch), device=self.device)

    def epoch(
        self, epoch: int, start_batch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield this rank's shard of the batches of `epoch` from `start_batch` on (to resume)."""
        order = self.order(epoch)
        for index in range(start_batch, len(self)):
            rows = order[index * self.batch_size : (index + 1) * self.batch_size]
            draws = self.draws(len(rows), self.generator(epoch, index))
            start, stop = shard_bounds(len(rows), self.rank, self.world_size)
            yield self.gather(rows[start:stop], draws.shard(start, stop))

    def batch(
        self, rows: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather, augment and normalise the images at `rows`; no augmentation without a generator."""
        return self.gather(rows, self.draws(len(rows), generator))

    def draws(self, batch: int, generator: torch.Generator | None) -> Draws:
        """The random choices for `batch` samples, in a fixed order: shifts, flips, cutouts, jitter."""
        device, pad, augment = self.device, self.pad, self.augment
        top = left = torch.full((batch,), pad, device=device)
        if generator is None:
            return Draws(top, left, None, None)
        if pad:
            top, left = torch.randint(
                0, 2 * pad + 1, (2, batch), generator=generator, device=device
            )
        flip = centre = None
        if augment.flip:
            flip = torch.rand(batch, generator=generator, device=device) < 0.5  # (B,)
        if augment.cutout:
            centre = torch.rand(2, batch, generator=generator, device=device)  # (2, B)
        shade = None
        if augment.jitter:  # drawn last, so the draws of the other augmentations are unchanged
            shade = torch.rand(2, batch, generator=generator, device=device) * 2 - 1  # (2, B)
        return Draws(top, left, flip, centre, shade)

    def gather(self, rows: torch.Tensor, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch at `rows` (B,), augmented by `draws`: from the device store, or read from the
        host (sorted rows, one read) into a store of this batch alone."""
        threads = torch.get_num_threads()
        if self.device.type != "cpu" or threads == 1:
            return self._gather(rows, draws)
        # A batch is a few passes over ~1 MB: too small for intra-op threads to pay off, and
        # OpenMP's fork-join is costly when cores are busy (measured on 2 shared cores: 3 ms with
        # 1 thread, 120 ms with 2). Training keeps its threads; only this part runs on one.
        torch.set_num_threads(1)
        try:
            return self._gather(rows, draws)
        finally:
            torch.set_num_threads(threads)

    def _gather(self, rows: torch.Tensor, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        labels = self.labels[rows]
        if isinstance(self.images, torch.Tensor):
            return self._augment(self.images, rows, self.count, draws), labels
        ordered, where = torch.sort(rows.cpu())
        local = torch.empty_like(where)
        local[where] = torch.arange(len(where))  # position of each row in the sorted read
        # One read of the sorted rows: a memory map then reads in file order, each page once.
        store = self._to_device(np.asarray(self.images[ordered.numpy()]))
        return self._augment(store, local.to(self.device), len(ordered), draws), labels

    def _augment(
        self, store: torch.Tensor, rows: torch.Tensor, count: int, draws: Draws
    ) -> torch.Tensor:
        """Gather rows of a store (count originals, then their mirror images), shift, flip, cut."""
        height, width, batch = self.height, self.width, len(rows)
        _, padded_height, padded_width, channels = store.shape
        sample = rows
        if draws.flip is not None:
            sample = rows + draws.flip * count  # the mirrored copy follows the originals
        arange = torch.arange(height, device=self.device)
        line = sample[:, None] * padded_height + draws.top[:, None] + arange  # (B, H)
        # (B, H): the first byte of each output row in the store
        start = (line * padded_width + draws.left[:, None]) * channels
        x = _rows_view(store, width).index_select(0, start.view(-1))
        x = x.view(batch, height, width, channels)
        x = normalise(x, self.scale, self.bias)  # (B, H, W, C)
        if draws.centre is not None:
            x = cutout(x, self.augment.cutout, draws.centre)
        if draws.jitter is not None:
            x = jitter(x, self.augment.jitter, draws.jitter)
        x = x.permute(0, 3, 1, 2)  # (B, C, H, W), a view whose strides already are channels_last
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(dtype=self.dtype, memory_format=fmt)


def _rows_view(store: torch.Tensor, width: int) -> torch.Tensor:
    """Every output image row is W*C contiguous bytes of the store: an overlapping (bytes, W*C)
    view lets one index_select copy whole rows, measured 10x faster on CPU than per-pixel
    advanced indexing."""
    row_bytes = width * store.shape[-1]
    return store.view(-1).as_strided((store.numel() - row_bytes + 1, row_bytes), (1, 1))


def cutout(x: torch.Tensor, size: int, centre: torch.Tensor) -> torch.Tensor:
    """Zero one size x size square per image (B, H, W, C) at `centre` (2, B) in [0, 1) units,
    clipped at the edges."""
    batch, height, width, _ = x.shape
    top = (centre[0] * height).long() - size // 2
    left = (centre[1] * width).long() - size // 2
    rows = torch.arange(height, device=x.device) - top[:, None]  # (B, H)
    cols = torch.arange(width, device=x.device) - left[:, None]  # (B, W)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return x.masked_fill_(inside[..., None], 0.0)


def jitter(x: torch.Tensor, amount: float, draws: torch.Tensor) -> torch.Tensor:
    """Per image (B, H, W, C): contrast about its mean by 1 ± amount, brightness ± amount;
    `draws` (2, B) in [-1, 1), one pair per image."""
    draws = draws[:, :, None, None, None]  # (2, B, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return x.sub_(mean).mul_(1 + amount * draws[0]).add_(mean + amount * draws[1])
