"""PNG figures of a run: the training loss curve (from its TensorBoard events) and a grid of frames to compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path


def read_scalars(event_folder: str | Path, tags: tuple[str, ...]) -> dict[str, tuple[list[int], list[float]]]:
    """{tag: (steps, values)} of the TensorBoard scalars in `event_folder` (tags absent there are left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(event_folder), size_guidance={"scalars": 0}).Reload()
    present = set(events.Tags().get("scalars", []))
    return {
        tag: ([e.step for e in events.Scalars(tag)], [e.value for e in events.Scalars(tag)])
        for tag in tags
        if tag in present
    }


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_loss_curve(series: dict[str, tuple[list[int], list[float]]], path: str | Path, title: str = "") -> Path:
    """One line per loss series (iteration on x, log-scaled loss on y), written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not series:
        raise ValueError("no loss values to plot")
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for tag, (steps, values) in series.items():
        axis.plot(steps, values, label=tag.split("/", 1)[-1])
    axis.set_xlabel("iteration")
    axis.set_ylabel("loss")
    axis.set_yscale("log")
    axis.grid(True, alpha=0.3)
    axis.legend()
    axis.set_title(title)
    try:
        return _save(figure, Path(path))
    finally:
        plt.close(figure)


def frame_grid(rows: dict[str, np.ndarray], path: str | Path, num_columns: int = 4) -> Path:
    """A PNG with one row per labelled video ([T,H,W,3] uint8) at the same `num_columns` evenly spaced frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = min(len(v) for v in rows.values())
    picks = np.linspace(0, frames - 1, num_columns).round().astype(int)
    height, width = next(iter(rows.values())).shape[1:3]
    scale = 1.6 / max(height, width) * 2
    figure, axes = plt.subplots(
        len(rows), len(picks), squeeze=False, figsize=(len(picks) * width * scale, len(rows) * height * scale + 0.4)
    )
    for r, (label, video) in enumerate(rows.items()):
        for c, index in enumerate(picks):
            axis = axes[r][c]
            axis.imshow(video[index])
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(f"frame {index}", fontsize=8)
            if c == 0:
                axis.set_ylabel(label, fontsize=8)
    figure.tight_layout()
    try:
        return _save(figure, Path(path))
    finally:
        plt.close(figure)
