"""Low-rank adapters (LoRA) on the Conv3d layers of the video networks, mergeable into NVIDIA's weight layout.

Factorization (LoCon, as PEFT's and LyCORIS' convolution LoRA): for a base Conv3d W [out, in, kt, kh, kw] the
adapter is A, a conv with W's kernel size, stride and padding from `in` to `r` channels, followed by B, a 1x1x1
conv from `r` to `out`, added to the base output with scale alpha/r. Both are linear, so the pair is one conv
with weight delta_W[o, i, t, h, w] = (alpha/r) * sum_k B[o, k] A[k, i, t, h, w]: a rank-r update of W viewed as
an [out, in*kt*kh*kw] matrix, which merges exactly into the base weight. B starts at zero, so training starts
at the base network. Why this one:
- it is the standard conv LoRA, whose unmerged forward is two small convs (no per-step weight materialization):
  with the base frozen, backward skips the base weight gradient, which costs as much as the base forward;
  adding r/out + r/(in*k) of a conv's FLOPs is far cheaper than re-forming delta_W and its full-size gradient;
- vtok's kernels are already factorized ((1,3,3) spatial, (3,1,1) temporal, 1x1x1), so a Tucker/CP split of
  the kernel (LyCORIS' `use_tucker`) saves little, and one adapter per kernel tap would cost k times the
  parameters; LoHa/LoKr (Hadamard/Kronecker products) are more expressive per parameter but have no cheap
  unmerged forward: they re-form the full delta_W every step.

The adapter of the Conv3d named `<name>` (e.g. `decoder.conv_in.0.conv3d`) is its child `<name>.lora` with
parameters `<name>.lora.down.weight` (A) and `<name>.lora.up.weight` (B), ordinary nn.Parameters, so DDP,
FSDP2 (which shards them with their block), activation checkpointing, autocast and `set_memory_format` treat
them like any weight. They are added by a forward hook on the Conv3d, so the base modules, their classes and
their keys stay as they are: `network.state_dict()` holds NVIDIA's keys plus the `*.lora.*` ones, and
`merged_state_dict` / `merge_lora_state` give NVIDIA's keys alone with the adapters folded in (for `iter_N.pt`,
strict loaders and TorchScript export via `merged_copy`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .memory_format import memory_format_of

SETTINGS_KEY = "model.config.lora"
ADAPTER = "lora"
DEFAULT_TARGETS = ("decoder",)


def matches_prefix(name: str, prefix: str) -> bool:
    """True when `name` is `prefix` or lies under it at a '.' boundary (`decoder.up.1` does not match `up.10`)."""
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


@dataclass(frozen=True)
class LoRASettings:
    """rank 0 = no adapters; alpha None = rank (scale 1); targets are module-name prefixes."""

    rank: int = 0
    alpha: float | None = None
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        self.validate()

    def validate(self) -> None:
        """ValueError naming the setting (`model.config.lora.<key>`) on a value vtok cannot use."""
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 0:
            raise ValueError(f"{SETTINGS_KEY}.rank must be an integer >= 0 (0 turns LoRA off), got {self.rank!r}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"{SETTINGS_KEY}.alpha must be a positive number (or unset: the rank), got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{SETTINGS_KEY}.dropout must lie in [0, 1), got {self.dropout!r}")
        if self.rank and not self.targets:
            raise ValueError(f"{SETTINGS_KEY}.targets is empty: name module prefixes such as 'decoder'")
        if any(not isinstance(t, str) for t in self.targets):
            raise ValueError(f"{SETTINGS_KEY}.targets must be module-name prefixes (strings), got {list(self.targets)}")

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    @property
    def scale(self) -> float:
        """alpha / rank, the factor on B(A(x))."""
        return (self.alpha if self.alpha is not None else self.rank) / self.rank if self.rank else 0.0

    def metadata(self) -> dict[str, str]:
        """String metadata for an adapters file (safetensors' header), read back by `from_metadata`."""
        alpha = float(self.alpha if self.alpha is not None else self.rank)
        return {
            "lora.rank": str(self.rank),
            "lora.alpha": repr(alpha),
            "lora.dropout": repr(float(self.dropout)),
            "lora.targets": ",".join(self.targets),
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> LoRASettings:
        try:
            return cls(
                int(metadata["lora.rank"]),
                float(metadata["lora.alpha"]),
                float(metadata["lora.dropout"]),
                tuple(t for t in metadata["lora.targets"].split(",") if t),
            )
        except (KeyError, ValueError) as err:
            raise ValueError(f"not vtok LoRA metadata ({err}): {dict(metadata)}") from err


class Conv3dAdapter(nn.Module):
    """scale * B(A(dropout(x))) for a base Conv3d: A has the base kernel, stride and padding; B is 1x1x1."""

    def __init__(self, base: nn.Conv3d, rank: int, scale: float, dropout: float = 0.0) -> None:
        super().__init__()
        if base.groups != 1 or base.padding_mode != "zeros" or isinstance(base.padding, str):
            raise ValueError("LoRA adapts plain Conv3d layers (groups=1, numeric zero padding)")
        weight = base.weight
        options = {"device": weight.device, "dtype": weight.dtype}
        self.scale = scale
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.down = nn.Conv3d(
            base.in_channels,
            rank,
            base.kernel_size,
            stride=base.stride,
            padding=base.padding,
            dilation=base.dilation,
            bias=False,
            **options,
        )
        self.up = nn.Conv3d(rank, base.out_channels, 1, bias=False, **options)
        nn.init.zeros_(self.up.weight)
        layout = memory_format_of(weight)
        for p in (self.down.weight, self.up.weight):
            p.data = p.data.contiguous(memory_format=layout)

    @property
    def rank(self) -> int:
        return self.down.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(self.dropout(x))) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """The merged update of the base weight, [out, in, kt, kh, kw], in float32."""
        return _delta(self.down.weight, self.up.weight, self.scale)


def _delta(down: torch.Tensor, up: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.einsum("or,rithw->oithw", up.detach().float().flatten(1), down.detach().float()) * scale


def _add_adapter_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of an adapted Conv3d (a module-level function, so deepcopy and pickling keep working)."""
    return output + getattr(module, ADAPTER)(args[0])


def conv3d_names(network: nn.Module, prefixes: Iterable[str] = DEFAULT_TARGETS) -> list[str]:
    """Names of the nn.Conv3d modules under any of `prefixes`, in module order (adapters' own convs excluded)."""
    prefixes = tuple(prefixes)
    return [name for name, m in _base_convs(network) if any(matches_prefix(name, p) for p in prefixes)]


def default_targets(network: nn.Module) -> list[str]:
    """Every Conv3d of the decoder: what `targets=("decoder",)` (the default) selects."""
    return conv3d_names(network, DEFAULT_TARGETS)


def _base_convs(network: nn.Module) -> list[tuple[str, nn.Conv3d]]:
    adapter_convs = {id(c) for m in network.modules() if isinstance(m, Conv3dAdapter) for c in (m.down, m.up)}
    return [(n, m) for n, m in network.named_modules() if isinstance(m, nn.Conv3d) and id(m) not in adapter_convs]


def select_targets(network: nn.Module, targets: Sequence[str]) -> list[str]:
    """The Conv3d names `targets` select; ValueError naming `model.config.lora.targets` for a prefix that selects
    none (a typo, or a module without Conv3d layers such as an image model's)."""
    convs = [name for name, _ in _base_convs(network)]
    modules = [name for name, _ in network.named_modules()]
    for prefix in targets:
        if not any(matches_prefix(name, prefix) for name in convs):
            what = (
                "matches no module"
                if not any(matches_prefix(n, prefix) for n in modules)
                else "matches modules but no Conv3d layer"
            )
            example = ", ".join(p for p in ("decoder", "decoder.up", "decoder.conv_out", "encoder") if p in modules)
            raise ValueError(
                f"{SETTINGS_KEY}.targets: {prefix!r} {what} of this network "
                f"(module-name prefixes such as {example or 'decoder'})"
            )
    return conv3d_names(network, targets)


def add_lora(network: nn.Module, settings: LoRASettings, allowed: Sequence[str] | None = None) -> list[str]:
    """Add adapters to the Conv3d layers `settings.targets` selects and freeze everything else (in place).

    Afterwards only the adapters' parameters require grad. `allowed`: module prefixes the adapters must lie
    under (the parts `model.config.trainable` leaves trainable); a target outside them is a ValueError. Returns
    the adapted Conv3d names; rank 0 adds nothing and returns [] (the network is left untouched).
    """
    settings.validate()
    if not settings.enabled:
        return []
    if adapters(network):
        raise ValueError("this network already has LoRA adapters; remove_lora() first")
    names = select_targets(network, settings.targets)
    if allowed is not None:
        outside = [n for n in names if not any(matches_prefix(n, p) for p in allowed)]
        if outside:
            raise ValueError(
                f"{SETTINGS_KEY}.targets selects {outside[0]}"
                f"{f' and {len(outside) - 1} more' if len(outside) > 1 else ''}, outside what "
                f"model.config.trainable leaves trainable ({', '.join(allowed) or 'nothing'}); "
                f"narrow {SETTINGS_KEY}.targets or widen model.config.trainable"
            )
    network.requires_grad_(False)
    modules = dict(network.named_modules())
    for name in names:
        conv = modules[name]
        conv.add_module(ADAPTER, Conv3dAdapter(conv, settings.rank, settings.scale, settings.dropout))
        conv.register_forward_hook(_add_adapter_output)
    return names


def adapters(network: nn.Module) -> dict[str, Conv3dAdapter]:
    """{adapted Conv3d name: its adapter}."""
    return {
        name: getattr(m, ADAPTER)
        for name, m in network.named_modules()
        if isinstance(m, nn.Conv3d) and isinstance(getattr(m, ADAPTER, None), Conv3dAdapter)
    }


def is_lora_key(key: str) -> bool:
    return f".{ADAPTER}." in f".{key}"


def lora_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters alone: `<conv name>.lora.down.weight` and `.up.weight`, detached (for `iter_N_lora.safetensors`)."""
    return {k: v.detach() for k, v in network.state_dict().items() if is_lora_key(k)}


def lora_parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for a in adapters(network).values() for p in a.parameters())


@torch.no_grad()
def load_lora_state_dict(network: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy adapter weights in exactly (keys and shapes must match the network's adapters; ValueError otherwise)."""
    own = {k: v for k, v in network.state_dict(keep_vars=True).items() if is_lora_key(k)}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [
        f"{k} {list(state[k].shape)} != {list(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = [
        f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if items
    ]
    if problems:
        raise ValueError(
            f"LoRA adapters do not fit this network's (check {SETTINGS_KEY}.rank and .targets): " + "; ".join(problems)
        )
    for key, value in state.items():
        own[key].copy_(value)


def merge_lora_state(state: Mapping[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """A full state dict with `*.lora.*` keys -> NVIDIA's keys alone, each adapted `<conv>.weight` replaced by
    weight + delta_W (summed in float32, cast back to the weight's dtype and layout). A pure function on
    tensors, so it also serves FSDP2's gathered full state dicts."""
    merged = {k: v for k, v in state.items() if not is_lora_key(k)}
    for key in state:
        if key.endswith(f"{ADAPTER}.down.weight"):
            conv = key[: -len(f"{ADAPTER}.down.weight")]
            base = state[f"{conv}weight"]
            delta = _delta(state[key], state[f"{conv}{ADAPTER}.up.weight"], scale).to(base.device)
            total = base.detach().float().clone(memory_format=torch.preserve_format).add_(delta)
            merged[f"{conv}weight"] = total.to(base.dtype)
    return merged


def merged_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """The network's state dict in NVIDIA's keys, adapters folded into their base weights (detached copies)."""
    found = adapters(network)
    scales = {a.scale for a in found.values()}
    if len(scales) > 1:
        raise ValueError(f"adapters with different scales {sorted(scales)}; merge them one by one")
    state = {k: v.detach() for k, v in network.state_dict().items()}
    return merge_lora_state(state, scales.pop()) if found else state


@torch.no_grad()
def remove_lora(network: nn.Module, merge: bool = False) -> nn.Module:
    """Remove every adapter and its hook (in place), folding it into the base weight first when `merge`.

    The base modules are the original objects, with NVIDIA's keys; requires_grad is left as `add_lora` set it.
    """
    for name, adapter in adapters(network).items():
        conv = network.get_submodule(name)
        if merge:
            merged = conv.weight.detach().float().clone(memory_format=torch.preserve_format)
            conv.weight.copy_(merged.add_(adapter.delta_weight().to(merged.device)))
        for key in [k for k, hook in conv._forward_hooks.items() if hook is _add_adapter_output]:
            del conv._forward_hooks[key]
        delattr(conv, ADAPTER)
    return network


def merged_copy(network: nn.Module) -> nn.Module:
    """A deep copy with the adapters merged and removed: a plain network for `export_jit` and strict loaders."""
    return remove_lora(copy.deepcopy(network), merge=True)
