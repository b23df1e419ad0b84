"""High-resolution frames in overlapping spatial tiles, blended so that no tile edge shows.

Each tile is encoded (or decoded) on its own, which bounds activation memory by the tile size. Where
tiles overlap, continuous outputs are averaged with trapezoid weights that fall towards each tile's
edges (as diffusers' tiled VAE does); token indices cannot be averaged, so each position takes the
token of the tile whose centre is nearest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` covering `size` with at least `overlap` shared; the last
    tile is aligned to the end."""
    if tile >= size:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _axis_weights(starts: list[int], tile: int, overlap: int, size: int, blend: str) -> list[torch.Tensor]:
    """Per-tile weights along one axis: trapezoids ("fade") or nearest-centre ownership ("nearest")."""
    positions = torch.arange(tile, dtype=torch.float32)
    if blend == "fade":
        ramp = torch.minimum(positions + 1, tile - positions).clamp(max=overlap + 1)
        return [ramp for _ in starts]
    centres = torch.tensor([s + (tile - 1) / 2 for s in starts])
    coords = torch.arange(size, dtype=torch.float32)
    inside = (coords[None] >= torch.tensor(starts)[:, None]) & (coords[None] < torch.tensor(starts)[:, None] + tile)
    distance = torch.where(inside, (coords[None] - centres[:, None]).abs(), torch.inf)
    owner = distance.argmin(0)
    return [(owner[s : s + tile] == i).float() for i, s in enumerate(starts)]


@dataclass(frozen=True)
class Tiling:
    """Tile size and overlap in input pixels (multiples of the spatial compression)."""

    height: int
    width: int
    overlap: int

    @classmethod
    def resolve(cls, sc: int, tile: tuple[int, int] | None, overlap: int | None) -> Tiling | None:
        """Validate `--tile H [W]` and `--tile_overlap` (default: a quarter of the smaller tile side)."""
        if tile is None:
            return None
        height, width = tile
        if height % sc or width % sc or min(height, width) < 2 * sc:
            raise ValueError(f"--tile sides must be multiples of {sc} and at least {2 * sc}, got {height}x{width}")
        if overlap is None:
            overlap = min(height, width) // 4 // sc * sc
        if overlap % sc or not 0 <= overlap < min(height, width):
            raise ValueError(f"--tile_overlap must be a multiple of {sc} smaller than the tile, got {overlap}")
        return cls(height, width, overlap)

    def scaled(self, factor: int, divide: bool = False) -> Tiling:
        """The same tiling measured in latent units (divide) or back in pixels."""
        scale = (lambda v: v // factor) if divide else (lambda v: v * factor)
        return Tiling(scale(self.height), scale(self.width), scale(self.overlap))


def tile_count(height: int, width: int, tiling: Tiling | None) -> int:
    """How many tiles `run_tiled` cuts a `height` x `width` input into (1 without tiles)."""
    if tiling is None:
        return 1
    rows = tile_starts(height, tiling.height, tiling.overlap)
    return len(rows) * len(tile_starts(width, tiling.width, tiling.overlap))


def run_tiled(
    fn: Callable[..., torch.Tensor],
    x: torch.Tensor,
    tiling: Tiling | None,
    scale: float,
    blend: str,
    keyed: bool = False,
) -> torch.Tensor:
    """`fn(x)` computed tile by tile over the last two dims of `x`; `scale` is output size / input size.

    With `keyed`, `fn(tile, (row, column))` also gets the tile's index, so a stateful `fn` (one stream per
    tile) can tell the tiles apart; the whole input is tile (0, 0)."""
    height, width = x.shape[-2:]
    if tiling is None or (tiling.height >= height and tiling.width >= width):
        return fn(x, (0, 0)) if keyed else fn(x)
    rows = tile_starts(height, tiling.height, tiling.overlap)
    cols = tile_starts(width, tiling.width, tiling.overlap)
    tile_h, tile_w = min(tiling.height, height), min(tiling.width, width)
    out_tile_h, out_tile_w = int(tile_h * scale), int(tile_w * scale)
    out_overlap = int(tiling.overlap * scale)
    row_w = _axis_weights([int(r * scale) for r in rows], out_tile_h, out_overlap, int(height * scale), blend)
    col_w = _axis_weights([int(c * scale) for c in cols], out_tile_w, out_overlap, int(width * scale), blend)
    total = weights = None
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            tile = x[..., r : r + tile_h, c : c + tile_w]
            y = fn(tile, (i, j)) if keyed else fn(tile)
            if total is None:
                shape = (*y.shape[:-2], int(height * scale), int(width * scale))
                total = torch.zeros(shape, dtype=y.dtype if blend == "nearest" else torch.float32, device=y.device)
                weights = torch.zeros(shape[-2:], dtype=torch.float32, device=y.device)
            w = (row_w[i][:, None] * col_w[j][None, :]).to(y.device)
            rr, cc = int(r * scale), int(c * scale)
            region = (..., slice(rr, rr + out_tile_h), slice(cc, cc + out_tile_w))
            if blend == "nearest":
                total[region] = torch.where(w > 0, y, total[region])
            else:
                total[region] += y.float() * w
                weights[region] += w
    assert total is not None and weights is not None
    return total if blend == "nearest" else (total / weights).to(y.dtype)
