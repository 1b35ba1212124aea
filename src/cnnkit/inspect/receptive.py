"""Which input pixels an output unit sees: (kernel, stride, pad_before) composed through layers.

Pure Python. Along one axis a layer maps its output index i to the input window
[i*stride - pad_before, i*stride - pad_before + kernel - 1]; composing that from the layer down
to the input gives window start = i*jump + offset and size = the planner's receptive field, where
jump = product of strides and offset = -sum(pad_before_l * jump_before_l). The start may be
negative or the window may run past the image: those pixels are padding.

>>> unit_window([(5, 1, 0), (2, 2, 0), (5, 1, 0)], 3)   # LeNet's conv2, output row 3
(6, 14)
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnkit.plan import Plan
from cnnkit.shapes import pad_amounts

Step = tuple[int, int, int]  # (kernel, stride, pad_before) along one axis


def unit_window(steps: Sequence[Step], index: int) -> tuple[int, int]:
    """(start, size) in the input of output unit `index` after `steps` (first layer first)."""
    start, size = index, 1
    for kernel, stride, pad_before in reversed(steps):
        start = start * stride - pad_before
        size = (size - 1) * stride + kernel
    return start, size


def jump_offset(steps: Sequence[Step]) -> tuple[int, int, int]:
    """(jump, offset, size): unit i's window starts at i*jump + offset and spans size pixels."""
    offset, _ = unit_window(steps, 0)
    start_one, size = unit_window(steps, 1)
    return start_one - offset, offset, size


def plan_steps(network_plan: Plan, layer_name: str) -> tuple[list[Step], list[Step]]:
    """The (rows, columns) steps from the input up to and including `layer_name`.

    Layers without a window (activations, batch norm, dropout) are (1, 1, 0). An inception
    module counts as its widest path, the 5x5 'same' conv, as the planner does; a residual
    block is its two 3x3 convs (SAME at its stride, then pad 1), as cnnkit.build builds it.
    Raises SpecError (from Plan.layer) for a name that is not in the plan.
    """
    target = network_plan.layer(layer_name)
    rows: list[Step] = []
    cols: list[Step] = []
    height, width, _ = network_plan.input_shape
    for layer in network_plan.layers:
        if layer.flat:
            break
        if layer.kernel_size is not None and layer.stride is not None:
            top, _, left, _ = layer.padding or (0, 0, 0, 0)
            rows.append((layer.kernel_size[0], layer.stride, top))
            cols.append((layer.kernel_size[1], layer.stride, left))
        elif layer.kind == "inception":
            rows.append((5, 1, 2))
            cols.append((5, 1, 2))
        elif layer.kind == "res":
            stride = layer.stride or 1
            rows += [(3, stride, pad_amounts(height, 3, stride, "same")[0]), (3, 1, 1)]
            cols += [(3, stride, pad_amounts(width, 3, stride, "same")[0]), (3, 1, 1)]
        height, width, _ = layer.output_shape
        if layer.name == target.name:
            return rows, cols
    raise ValueError(f"layer {layer_name!r} has no spatial extent (it comes after flatten/gap)")


def input_box(network_plan: Plan, layer_name: str, row: int, col: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of output unit (row, col) of `layer_name`, in input pixels."""
    rows, cols = plan_steps(network_plan, layer_name)
    top, height = unit_window(rows, row)
    left, width = unit_window(cols, col)
    return top, left, height, width
