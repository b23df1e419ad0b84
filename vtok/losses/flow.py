"""The optical-flow loss: the flow between neighbouring frames of the input and of its reconstruction.

vtok does not ship or download a flow network. The term runs a TorchScript flow model the user provides,
called as `flow(frames_a, frames_b)` on [N,3,H,W] images in [-1,1] and returning the flow [N,2,H,W] (or a
list of refinements, of which the last is used), as torchvision's RAFT does. Export RAFT-large once on a
machine with torchvision:

    python -c "import torch, torchvision; m = torchvision.models.optical_flow.raft_large(weights='DEFAULT');
               torch.jit.script(m.eval()).save('raft_large.jit')"

As in NVIDIA's FlowLoss, both clips are downscaled by `scale`, the flow is taken forward and backward in time,
upsampled back and multiplied by `scale`, and the term is the L1 between the input's (no gradient) and the
reconstruction's flows. The flow network is frozen.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint.reader import read_jit_file
from .schedules import WeightSchedule

FLOW_ENV = "VTOK_FLOW_NETWORK"
FLOW_MULTIPLE = 8  # RAFT's feature stride: downscaled frames must be multiples of it


def find_flow_network(path: str | None) -> Path:
    """The flow network file: `path`, else $VTOK_FLOW_NETWORK; FileNotFoundError saying how to make one."""
    candidate = path or os.environ.get(FLOW_ENV)
    if candidate and Path(candidate).is_file():
        return Path(candidate)
    where = f"{candidate!r} does not exist" if candidate else f"loss.flow.network is not set and ${FLOW_ENV} is empty"
    raise FileNotFoundError(
        f"the flow loss needs a TorchScript flow network ({where}); export torchvision's RAFT "
        f"with `torch.jit.script(raft_large(weights='DEFAULT')).save('raft_large.jit')` and set "
        f"loss.flow.network=raft_large.jit, or set loss.flow.enabled=false"
    )


def load_flow_network(path: str | Path, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """A frozen TorchScript flow network, in eval mode."""
    network = read_jit_file(path, map_location=device)[0].eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return network


class FlowLoss(nn.Module):
    """weight(it) * mean |flow(x) - flow(x_hat)| over both time directions, at 1/scale resolution."""

    def __init__(
        self,
        network: nn.Module,
        schedule: WeightSchedule,
        scale: int = 2,
        dtype: torch.dtype = torch.float32,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.network = network
        self.schedule = schedule
        self.scale = scale
        self.dtype = dtype
        self.checkpoint_activations = checkpoint_activations

    def flows(self, video: torch.Tensor) -> torch.Tensor:
        """[B,3,T,H,W] -> flows [2,B*(T-1),2,H,W]: t -> t+1 and t+1 -> t, at full resolution and scale."""
        b, c, t, h, w = video.shape
        small_h, small_w = h // self.scale, w // self.scale
        if small_h % FLOW_MULTIPLE or small_w % FLOW_MULTIPLE:
            raise ValueError(
                f"loss.flow: {h}x{w} frames downscaled by scale={self.scale} give {small_h}x{small_w}; "
                f"the flow network needs multiples of {FLOW_MULTIPLE}: change the crop or loss.flow.scale"
            )
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        if self.scale != 1:
            frames = F.interpolate(frames, size=(small_h, small_w), mode="bilinear", align_corners=False)
        frames = frames.unflatten(0, (b, t)).to(self.dtype)
        first, second = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)
        pairs = (torch.cat([first, second]), torch.cat([second, first]))
        # reentrant checkpointing: TorchScript modules lack the saved-tensor hooks of the other kind
        if self.checkpoint_activations and torch.is_grad_enabled():
            flow = torch.utils.checkpoint.checkpoint(self._run, *pairs, use_reentrant=True)
        else:
            flow = self._run(*pairs)
        if self.scale != 1:
            flow = F.interpolate(flow.float(), size=(h, w), mode="bilinear", align_corners=False) * self.scale
        return flow.float().unflatten(0, (2, -1))

    def _run(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = self.network(a, b)
        return out[-1] if isinstance(out, (list, tuple)) else out

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, iteration: int) -> torch.Tensor:
        weight = self.schedule(iteration)
        if weight == 0 or x.shape[2] < 2:
            return x_hat.new_zeros((), dtype=torch.float32)
        with torch.no_grad():
            target = self.flows(x.detach())
        return weight * (self.flows(x_hat) - target).abs().mean()
