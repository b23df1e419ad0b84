"""What post-training may change: `trainable` = "all" | "decoder" | "encoder" | module prefixes, plus LoRA.

Frozen parameters get requires_grad=False, so they get no gradients, no optimizer state and no EMA shadow,
and stay bit-identical. "decoder" freezes everything up to and including the latent head (encoder,
quant_conv, and the FSQ quantizer or Gaussian head, which have no weights): the latents and token indices
of every video stay those of the starting checkpoint, and only post_quant_conv and the decoder train.
"encoder" is the converse (encoder and quant_conv train). A list names module or parameter prefixes.
With LoRA (rank > 0) every base weight is frozen and only the adapters train; they must lie inside the
trainable part.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .lora import ADAPTER, LoRASettings, add_lora, matches_prefix

SETTING_KEY = "model.config.trainable"
PRESETS = {"all": ("",), "decoder": ("post_quant_conv", "decoder"), "encoder": ("encoder", "quant_conv")}


def trainable_prefixes(network: nn.Module, trainable: str | Sequence[str] = "all") -> tuple[str, ...]:
    """The module prefixes `trainable` leaves trainable; ValueError naming `model.config.trainable` on a
    prefix that matches no parameter (a preset name in a list is a plain prefix: ["decoder"] is the decoder
    module alone, the preset "decoder" also trains post_quant_conv)."""
    if isinstance(trainable, str):
        if trainable in PRESETS:
            return PRESETS[trainable]
        trainable = [trainable]
    prefixes = tuple(trainable)
    if not prefixes or any(not isinstance(p, str) or not p for p in prefixes):
        raise ValueError(
            f"{SETTING_KEY} must be one of {', '.join(PRESETS)} or a list of module prefixes, got {list(prefixes)!r}"
        )
    names = [name for name, _ in network.named_parameters()]
    for prefix in prefixes:
        if not any(matches_prefix(name, prefix) for name in names):
            raise ValueError(
                f"{SETTING_KEY}: {prefix!r} matches no parameter of this network (presets: "
                f"{', '.join(PRESETS)}; or module prefixes such as decoder.up, decoder.conv_out)"
            )
    return prefixes


def apply_trainable(
    network: nn.Module, trainable: str | Sequence[str] = "all", lora: LoRASettings | None = None
) -> list[str]:
    """Freeze what `trainable` (and LoRA, when its rank > 0) leave fixed, in place; return the trainable names.

    Call it before building the optimizer, EMA and DDP/FSDP2 wrappers, so they only see trainable parameters.
    Without LoRA the parameters under the prefixes require grad and all others do not. With LoRA, adapters
    are added where `lora.targets` says (ValueError naming `model.config.lora.targets` when that is outside
    the trainable part) and only they require grad.
    """
    prefixes = trainable_prefixes(network, trainable)
    if lora is not None and lora.enabled:
        add_lora(network, lora, allowed=prefixes)
    else:
        for name, p in network.named_parameters():
            p.requires_grad_(any(matches_prefix(name, prefix) for prefix in prefixes))
    return [name for name, p in network.named_parameters() if p.requires_grad]


def last_layer_weight(network: nn.Module) -> torch.Tensor:
    """The trainable weight closest to the output, for the adversarial adaptive weight: the decoder's last conv
    weight (`decoder.conv_out[-1].conv3d.weight`; an image model's `decoder.conv_out.weight`), or its LoRA
    adapter's B when the base is frozen.

    Under FSDP2 call it after the forward, so it returns the gathered weight the autograd graph used.
    """
    conv_out = network.decoder.conv_out
    conv = conv_out[-1].conv3d if isinstance(conv_out, nn.Sequential) else conv_out
    if conv.weight.requires_grad:
        return conv.weight
    adapter = getattr(conv, ADAPTER, None)
    if adapter is not None and adapter.up.weight.requires_grad:
        return adapter.up.weight
    raise ValueError(
        "the adversarial adaptive weight needs the decoder's last layer (decoder.conv_out) trainable, "
        "directly or through a LoRA adapter: include it in model.config.trainable / "
        "model.config.lora.targets, or set loss.adversarial.adaptive_weight=false"
    )
