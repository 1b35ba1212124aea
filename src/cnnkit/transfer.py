"""Start a run from another run's weights (`cnnkit train --from RUN`): transfer, adapt, freeze.

    source = open_run("runs/digits")                        # its manifest and weights, checked
    spec, notes = target_spec(source, input_text=None, class_names=["shirt", "shoe"])
    lineage = transfer_weights(model, source)               # copies what fits, says what not
    frozen = freeze_features(model)                         # --freeze: every layer but the fc's

The rules, one `if` each:
- Every tensor whose name and shape match is copied.
- The head (the last fc) is re-initialised when the classes differ (other names, other count)
  or when its inputs changed size; the note says so.
- Another input channel count (1 <-> 3) adapts the first layer's filters: gray to RGB divides
  the filters by 3 and replicates them, RGB to gray sums them, so that a gray image (R = G = B)
  gives the same responses as before.
- Another input size keeps conv weights (they do not depend on it); an fc layer other than the
  head whose inputs change size cannot be transferred, and the run is refused in one line.
- `--freeze` turns off the gradients of every layer but the fc layers, and keeps their batch
  norms in eval mode (their running statistics stay the source run's), as Keras does for
  frozen layers: the features stay exactly those that were learnt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnkit import presets, runs
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.spec import Spec, from_dict, parse_shape, shape_text


@dataclass
class SourceRun:
    """A trained run that a new run starts from."""

    path: Path
    manifest: dict[str, Any]
    spec: Spec  # as trained: its input shape and its head
    state: dict[str, torch.Tensor]  # its verified weights (CPU)

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self.manifest["class_names"]]


def open_run(path: str | os.PathLike) -> SourceRun:
    """The run at `path` with its verified weights; CheckpointError when it is not a run."""
    _check_run(path)
    model, manifest = runs.load_model(path)
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return SourceRun(Path(path), manifest, from_dict(manifest["spec"]), state)


def _check_run(path: str | os.PathLike) -> None:
    if not runs.is_run(path):
        raise CheckpointError(
            f"--from {path}: not a cnnkit run (no {runs.MANIFEST}); give the folder of a run "
            f"('cnnkit train --out DIR'), or use --model for a preset or notation"
        )


def target_spec(
    source: SourceRun, input_text: str | None, class_names: list[str]
) -> tuple[Spec, list[str]]:
    """(spec, notes): the source's network on `input_text` (default its own), one output per class."""
    spec, notes = source.spec, []
    if input_text is not None:
        shape = parse_shape(input_text)
        if shape != spec.input_shape:
            spec = presets.with_input(spec, shape)
            notes.append(
                f"--from {source.path}: trained on {shape_text(source.spec.input_shape)}, "
                f"now on {shape_text(shape)}"
            )
    if class_names != source.class_names:
        spec = presets.with_classes(spec, len(class_names))
    return spec, notes


def head_name(model: nn.Module) -> str:
    """The name of the last fc (nn.Linear) child: the layer that scores the classes."""
    linears = [name for name, child in model.named_children() if isinstance(child, nn.Linear)]
    if not linears:
        raise ConfigError("the model has no fc layer to re-initialise for the new classes")
    return linears[-1]


def transfer_weights(model: nn.Module, source: SourceRun, class_names: list[str]) -> dict[str, Any]:
    """Copy `source`'s weights into `model` (built for the new run) by the module's rules.

    Returns the lineage record for the manifest: the source, its weights' SHA-256 and what was
    transferred, adapted and re-initialised. Raises ConfigError when a layer cannot be kept.
    """
    head = head_name(model)
    first = next(name for name, _ in model.named_children())
    target = model.state_dict()
    same_classes = class_names == source.class_names
    copied: dict[str, torch.Tensor] = {}
    adapted, reset = set(), set()
    for key, tensor in target.items():
        layer = key.split(".")[0]
        have = source.state.get(key)
        if layer == head and (not same_classes or have is None or have.shape != tensor.shape):
            reset.add(layer)
        elif have is not None and have.shape == tensor.shape:
            copied[key] = have
        elif have is not None and layer == first and _channels_differ(have, tensor):
            copied[key] = _adapt_channels(have, tensor.shape[1])
            adapted.add(layer)
        else:
            raise _cannot_keep(source, key, have, tensor)
    model.load_state_dict({**target, **copied})
    layers = [name for name, _ in model.named_children()]
    with_weights = {key.split(".")[0] for key in target}
    return {
        "run": str(source.path),
        "weights_sha256": source.manifest["weights"]["sha256"],
        "notation": source.manifest.get("notation"),
        "class_names": source.class_names,
        "transferred": [n for n in layers if n in with_weights and n not in reset],
        "adapted": sorted(adapted),
        "reinitialised": sorted(reset),
        "reason": "new classes" if not same_classes else "new input size" if reset else None,
        "frozen": [],
    }


def _channels_differ(have: torch.Tensor, want: torch.Tensor) -> bool:
    """A first-layer conv filter bank that differs only in its input channels, 1 <-> 3."""
    return (
        have.ndim == 4
        and have.shape[0] == want.shape[0]
        and have.shape[2:] == want.shape[2:]
        and {have.shape[1], want.shape[1]} == {1, 3}
    )


def _adapt_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """(O, C, k, k) filters for `channels` inputs: gray -> RGB replicates / 3, RGB -> gray sums."""
    if channels == 3:
        return weight.repeat(1, 3, 1, 1) / 3  # (O, 3, k, k)
    return weight.sum(dim=1, keepdim=True)  # (O, 1, k, k)


def _cannot_keep(source: SourceRun, key: str, have: Any, want: torch.Tensor) -> ConfigError:
    shape = "missing" if have is None else "x".join(map(str, have.shape))
    trained = shape_text(source.spec.input_shape)
    return ConfigError(
        f"--from {source.path}: its {key} ({shape}) cannot fill "
        f"{'x'.join(map(str, want.shape))} on the new input; layers after flatten depend on the "
        f"input size: drop --input to train on the run's {trained}, or start from a run whose "
        f"model ends in global average pooling"
    )


def freeze_features(model: nn.Module) -> list[str]:
    """--freeze: no gradients for any layer but the fc layers; their batch norms in eval mode.

    A forward pre-hook puts each frozen batch norm back in eval mode on every call, so the
    trainer's `model.train()` (after each validation) cannot unfreeze its statistics.
    """
    frozen = []
    for name, child in model.named_children():
        if isinstance(child, nn.Linear) or not any(True for _ in child.parameters()):
            continue
        for parameter in child.parameters():
            parameter.requires_grad_(False)
        for module in child.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.register_forward_pre_hook(_stay_in_eval)
        frozen.append(name)
    return frozen


def _stay_in_eval(module: nn.Module, inputs: Any) -> None:
    module.eval()


def recipe_model(path: str | os.PathLike) -> str:
    """The preset whose RECIPES entry a run built on `path` starts from: the source's own."""
    _check_run(path)
    config = runs.read_manifest(path).get("train_config") or {}
    model = str(config.get("model") or presets.DEFAULT_PRESET)
    return model if model in presets.PRESETS else presets.DEFAULT_PRESET


def model_and_source(model: str | None, from_run: str | None) -> tuple[str, str | None]:
    """(model, from_run) from --model and --from: a run folder given as --model means --from.

    With a source run, the model is the source's preset, whose RECIPES entry the options start
    from; its network comes from the run itself.
    """
    if model is not None and Path(model).is_dir():
        if not runs.is_run(model):
            raise ConfigError(
                f"--model {model!r} is a folder without {runs.MANIFEST}, not a run; give a preset, "
                f"'>' notation or a spec file, or a run folder (--from RUN) to start from"
            )
        if from_run is not None:
            raise ConfigError(
                f"--model {model} is a run and --from {from_run} another; give one: --from RUN"
            )
        model, from_run = None, model
    if from_run is None:
        return model or presets.AUTO, None
    if model is not None:
        raise ConfigError(
            f"--from {from_run} brings its own network; drop --model {model!r} "
            f"(--input HxWxC trains that network on another input)"
        )
    return recipe_model(from_run), os.fspath(from_run)


def describe(lineage: dict[str, Any]) -> str:
    """One note for the start of training: what came from where."""
    parts = [f"weights from {lineage['run']}: {len(lineage['transferred'])} layer(s) kept"]
    if lineage["reinitialised"]:
        reset = ", ".join(lineage["reinitialised"])
        parts.append(f"{reset} re-initialised for its {lineage['reason']}")
    if lineage["adapted"]:
        parts.append(f"{', '.join(lineage['adapted'])} adapted to the new input channels")
    if lineage["frozen"]:
        parts.append(f"{', '.join(lineage['frozen'])} frozen (no gradients, batch norm in eval)")
    return "; ".join(parts)


__all__ = [
    "SourceRun", "describe", "freeze_features", "head_name", "model_and_source", "open_run",
    "recipe_model",
    "target_spec", "transfer_weights",
]  # fmt: skip
