"""DeviceLoader: a whole split held on the device as uint8, batched and augmented there.

Following airbench, there is no per-sample Dataset/DataLoader: one batch is one gather from the
uint8 tensor, a few tensor operations for augmentation, and one normalisation. Keeping uint8
(not float) on the device costs a quarter of the memory, and converting 512 images per batch is
cheaper than the gather itself.

Every random choice is a pure function of (seed, epoch, batch index): the permutation comes from
a generator seeded by (seed, epoch) and each batch's augmentation from one seeded by
(seed, epoch, batch). A run resumed at (epoch, start_batch) sees bitwise the same batches as an
uninterrupted one, on the same machine and device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from cnnkit.data.augment import Augment
from cnnkit.data.dataset import Split
from cnnkit.errors import ConfigError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


class DeviceLoader:
    """Batches of one split on `device`: (x float (B, C, H, W) normalised, y int64 (B,)).

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
    ) -> None:
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
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"device={str(device)!r} but CUDA is not available here; use device='cpu'"
            )
        self.dtype = _DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise ConfigError(f"dtype={dtype!r} must be one of {', '.join(_DTYPES)}")
        channels = split.images.shape[-1]
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ConfigError(
                f"mean={list(mean)} and std={list(std)} must have one value per channel "
                f"({channels}) and std must be positive"
            )
        height, width = split.images.shape[1:3]
        # Shifts read from a copy padded once (zeros for translate, mirror for crop), so a
        # batch's gather, shift and flip are one indexing operation with no per-batch padding.
        self.pad = augment.translate or augment.crop
        if self.pad >= min(height, width):
            raise ConfigError(
                f"augment {augment}: a shift of {self.pad} px is not smaller than the "
                f"{height}x{width} images; use at most {min(height, width) - 1}"
            )
        images = split.images
        if self.pad:
            mode = "reflect" if augment.crop else "constant"
            images = np.pad(images, ((0, 0), (self.pad,) * 2, (self.pad,) * 2, (0, 0)), mode=mode)
        if augment.flip:
            # A mirrored copy beside the originals: a flip is then a choice of row, not a copy
            # per batch (torch.where on a flipped batch measured 4x the cost of the gather).
            images = np.concatenate([images, images[:, :, ::-1]])
        elif not images.flags.writeable:
            images = images.copy()  # torch.from_numpy needs a writable array
        store = torch.from_numpy(np.ascontiguousarray(images)).to(
            self.device
        )  # (N or 2N, H+2p, W+2p, C)
        self.images = store  # uint8
        # Every output image row is W*C contiguous bytes of the store: an overlapping
        # (bytes, W*C) view lets one index_select copy whole rows, measured 10x faster on CPU
        # than per-pixel advanced indexing.
        row_bytes = width * store.shape[-1]
        self.rows_view = store.view(-1).as_strided(
            (store.numel() - row_bytes + 1, row_bytes), (1, 1)
        )
        self.labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64)).to(self.device)
        self.scale, self.bias = normalisation(mean, std, self.device)  # (C,) each
        self.height, self.width = height, width
        self.batch_size, self.augment, self.shuffle = batch_size, augment, shuffle
        self.drop_last, self.seed, self.channels_last = drop_last, seed, channels_last

    def __len__(self) -> int:
        """Batches per epoch."""
        count = len(self.labels)
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def generator(self, *key: object) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derive_seed(self.seed, *key))
        return generator

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's sample order (N,)."""
        count = len(self.labels)
        if not self.shuffle:
            return torch.arange(count, device=self.device)
        return torch.randperm(count, generator=self.generator(epoch), device=self.device)

    def epoch(
        self, epoch: int, start_batch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of `epoch` from `start_batch` on (for resuming mid-epoch)."""
        order = self.order(epoch)
        for index in range(start_batch, len(self)):
            rows = order[index * self.batch_size : (index + 1) * self.batch_size]
            yield self.batch(rows, self.generator(epoch, index))

    def batch(
        self, rows: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather, augment and normalise the images at `rows`; no augmentation without a generator."""
        threads = torch.get_num_threads()
        if self.device.type != "cpu" or threads == 1:
            return self._batch(rows, generator)
        # A batch is a few passes over ~1 MB: too small for intra-op threads to pay off, and
        # OpenMP's fork-join is costly when cores are busy (measured on 2 shared cores: 3 ms with
        # 1 thread, 120 ms with 2). Training keeps its threads; only this part runs on one.
        torch.set_num_threads(1)
        try:
            return self._batch(rows, generator)
        finally:
            torch.set_num_threads(threads)

    def _batch(
        self, rows: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        augment, pad, device = self.augment, self.pad, self.device
        height, width, batch = self.height, self.width, len(rows)
        _, padded_height, padded_width, channels = self.images.shape
        top = left = torch.full((batch,), pad, device=device)
        if generator is not None and pad:
            top, left = torch.randint(
                0, 2 * pad + 1, (2, batch), generator=generator, device=device
            )
        sample = rows
        if generator is not None and augment.flip:
            flip = torch.rand(batch, generator=generator, device=device) < 0.5  # (B,)
            sample = rows + flip * len(self.labels)  # the mirrored copy follows the originals
        line = sample[:, None] * padded_height + top[:, None] + torch.arange(height, device=device)
        start = (line * padded_width + left[:, None]) * channels  # (B, H): first byte of each row
        x = self.rows_view.index_select(0, start.view(-1)).view(batch, height, width, channels)
        x = normalise(x, self.scale, self.bias)  # (B, H, W, C)
        if generator is not None and augment.cutout:
            x = cutout(x, augment.cutout, generator)
        if generator is not None and augment.jitter:
            x = jitter(x, augment.jitter, generator)
        x = x.permute(0, 3, 1, 2)  # (B, C, H, W), a view whose strides already are channels_last
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(dtype=self.dtype, memory_format=fmt), self.labels[rows]


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one size x size square per image (B, H, W, C), centred anywhere, clipped at edges."""
    batch, height, width, _ = x.shape
    centre = torch.rand(2, batch, generator=generator, device=x.device)
    top = (centre[0] * height).long() - size // 2
    left = (centre[1] * width).long() - size // 2
    rows = torch.arange(height, device=x.device) - top[:, None]  # (B, H)
    cols = torch.arange(width, device=x.device) - left[:, None]  # (B, W)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return x.masked_fill_(inside[..., None], 0.0)


def jitter(x: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Per image (B, H, W, C): contrast about its mean by 1 ± amount, brightness ± amount."""
    batch = x.shape[0]
    draws = torch.rand(2, batch, 1, 1, 1, generator=generator, device=x.device) * 2 - 1
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return x.sub_(mean).mul_(1 + amount * draws[0]).add_(mean + amount * draws[1])
