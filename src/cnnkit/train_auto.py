"""Model 'auto' and --time: the network and recipe chosen from the data, and the steps a time
budget fits, measured on a copy of the model (`cnnkit.train` calls both before training)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch
from torch import nn

from cnnkit import presets
from cnnkit.data.sources import open_source, source_folder
from cnnkit.spec import parse_shape
from cnnkit.train_config import TrainConfig, auto_input, auto_recipe
from cnnkit.train_loop import Parts

MNIST_NAMES = ("mnist", "mnist-mini")  # known 28x28x1 digits: chosen without opening the data
DIGIT_CLASSES = [str(digit) for digit in range(10)]
TIMED_STEPS = 8  # --time: steps timed on a copy of the model; the first 3 (warm-up) are dropped
TIME_SHARE = 0.9  # of --time for the steps; evaluations and checkpoints take the rest
# Model auto's budget on a slow or busy machine still trains this many steps: on the photo
# folder (bench/photo_folder.py, 2 busy cores) 34 steps gave 80.8% test, 400 steps 90.8%.
AUTO_FLOOR_STEPS = 300


def resolve_auto(config: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """Model 'auto': the input, network and recipe chosen from the data; the options given stay.

    28x28x1 digits 0-9 (MNIST) keep `digits` and its recipe, so the bare command on MNIST is
    as fast as before; other data gets the auto family (presets.auto_notation) and auto_recipe.
    """
    if config.model != presets.AUTO:
        return config, []
    keep = {name: getattr(config, name) for name in config.given if name not in ("model", "input")}
    if config.data.split(":")[0] in MNIST_NAMES and config.input is None:
        return dataclasses.replace(config, model=presets.DEFAULT_PRESET), []
    dataset = open_source(config.data, data_dir=config.data_dir, progress=not config.quiet)
    have, classes = dataset.shape, len(dataset.class_names)
    digits = [str(name) for name in dataset.class_names] == DIGIT_CLASSES
    if have == (28, 28, 1) and digits and config.input is None:
        note = "model auto: 28x28x1 digits 0-9, so the 'digits' preset and its MNIST recipe"
        return dataclasses.replace(config, model=presets.DEFAULT_PRESET), [note]
    folder = source_folder(config.data) is not None
    shape = parse_shape(config.input) if config.input else auto_input(have, folder)
    train_images = len(dataset.splits["train"])
    if config.val is None:
        train_images = round(train_images * (1 - config.val_split))
    recipe = {**auto_recipe(shape, train_images, classes), **keep}
    if shape[:2] != have[:2] and config.resize is None and not folder:
        recipe["resize"] = "letterbox"
    name = presets.auto_name(shape, classes)
    config = dataclasses.replace(config, model=name, input=None, **recipe)
    budget = f"--time {config.time:g} s, at most {config.epochs} epochs" if config.time else ""
    note = (
        f"model auto: {name} for {'colour' if shape[2] == 3 else 'grayscale'} images of "
        f"{have[0]}x{have[1]} (most common size), {classes} classes; {budget or 'epochs'}, "
        f"batch {config.batch_size}, lr {config.lr:g}, augment {config.augment} "
        f"(explicit options override each; 'cnnkit plan {name}' shows the network)"
    )
    return config, [note]


def budget_steps(
    config: TrainConfig,
    parts: Parts,
    devices: list[int],
    notes: list[str],
    optimizer_for: Callable[[TrainConfig, nn.Module], torch.optim.Optimizer],
) -> int:
    """--time: the steps that fit, from steps timed on a copy of the model (at most `epochs`)."""
    import copy
    import itertools

    import torch.nn.functional as F

    model = copy.deepcopy(parts.model)
    optimizer = optimizer_for(config, model)
    loader, seconds, last = parts.train_loader, [], time.perf_counter()
    batches = itertools.chain.from_iterable(loader.epoch(e) for e in itertools.count())
    with torch.random.fork_rng(devices=devices):  # the run's randomness stays as without --time
        for x, y in itertools.islice(batches, TIMED_STEPS):  # (B, C, H, W), (B,)
            with parts.autocast:
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if parts.device.type == "cuda":
                torch.cuda.synchronize(parts.device)
            now = time.perf_counter()
            seconds.append(now - last)
            last = now
    step_s = sum(seconds[3:]) / len(seconds[3:])
    most = config.epochs * len(loader)
    fitting = max(1, min(most, int(TIME_SHARE * (config.time or 0) / step_s)))
    total = fitting
    if "time" not in config.given:  # model auto's own budget; a --time given is kept exactly
        total = max(fitting, min(most, AUTO_FLOOR_STEPS))
    why = "fit" if total == fitting else f"fit, but model auto trains at least {total}"
    limit = ", the most --epochs allows" if total == most else ""
    notes.append(
        f"--time {config.time:g}: a step takes {step_s * 1000:.0f} ms here, so {fitting:,} steps "
        f"{why} ({total / len(loader):.1f} epochs{limit}); the one-cycle schedule is sized to them"
    )
    return total
