"""Notes for a folder whose images differ a lot in mode or size, printed before training."""

from __future__ import annotations


def variety_notes(
    stats: list[tuple[int, int, bool]], shape: tuple[int, int, int], resize: str
) -> list[str]:
    """Notes when the images (h, w, colour) differ a lot: mixed grey and colour, sizes > 2x apart."""
    notes = []
    height, width, channels = shape
    colour = sum(1 for stat in stats if stat[2])
    if 0 < colour < len(stats):
        made = "RGB (grey replicated)" if channels == 3 else "grayscale ((R+G+B)/3)"
        notes.append(
            f"mixed modes: {len(stats) - colour:,} of {len(stats):,} images are grayscale and "
            f"{colour:,} colour; all were made {made}"
        )
    heights, widths = [s[0] for s in stats], [s[1] for s in stats]
    if stats and (max(heights) > 2 * min(heights) or max(widths) > 2 * min(widths)):
        by_area = sorted(stats, key=lambda s: s[0] * s[1])
        small, large = by_area[0], by_area[-1]
        notes.append(
            f"image sizes differ by more than 2x, from {small[1]}x{small[0]} to "
            f"{large[1]}x{large[0]} (width x height); all were fitted to {width}x{height} "
            f"({resize}), so small images are enlarged and large ones lose detail; "
            f"pass --input to choose the size"
        )
    return notes
