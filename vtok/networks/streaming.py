"""Exact streaming of the causal video encoder and decoder: a video in chunks, the numbers of one whole pass.

Every operation of the factorized video networks is causal in time, so the output for a frame depends only
on the frames up to it; carrying a little state from one chunk to the next reproduces one pass over the
whole video. `StreamEncoder` / `StreamDecoder` build, per stream, a tree of small stateful objects that
mirrors the module tree and calls the modules' own convolutions and norms. Nothing is added to or kept on
the modules (weights, state_dict keys and the normal forward are untouched), two streams share nothing, and
closing a stream drops all of it. The state each operation carries:

- per-frame operations (spatial and 1x1x1 convs, per-frame GroupNorm, swish, spatial attention, spatial
  down/upsampling): none.
- a causal conv with temporal kernel kT and time stride s: the first chunk gets the usual kT-1+(1-s)
  copies of frame 0 in front; later chunks run on [carried frames, chunk], and the conv keeps the frames
  its next output window starts from (kT-1 for stride 1, one for the stride-2 downsampling conv). Every
  output is the same dot product over the same frames as in one pass.
- hybrid temporal downsampler: its extra copy of frame 0 goes in front of the first chunk only, and its
  2-frame mean pairs frames counted from the start of the stream (an odd leftover frame would be carried).
- hybrid temporal upsampler: T -> 2T-1 drops the first repeated frame on the first chunk only; later
  chunks repeat every frame twice, which continues the same sequence.
- Haar patcher: frame 0 is repeated ps-1 times before the first chunk only. A first chunk of 1 + k*tc
  frames and later chunks of k*tc frames cover whole ps-frame groups, so the Haar pairs line up. The
  unpatcher drops its ps-1 leading frames from the first chunk only.
- causal temporal attention: keys and values of earlier frames are kept (per spatial position); a chunk's
  queries attend to [cached, own] keys under the causal mask, so each query sees the keys it sees in one
  pass. With `attention_horizon` H (latent frames) a query of latent frame l sees only keys of latent
  frames > l - H, a sliding window that is the same for every chunk plan, and older keys are dropped:
  latent frames 0..H-1 are exact, later ones are not.

Memory. Conv state is constant in the video length: per temporal conv, (kT - s) frames of its input,
C_in x h x w x B x bytes(dtype) each (CV8x8x8 at 720p in fp32: 1.2 GiB encoder, 1.7 GiB decoder). The
attention cache grows by 2 (keys, values) x C x h x w x r x B x bytes(dtype) per latent frame for each
temporal-attention block with C channels at h x w positions and r frames per latent frame, and holds at
most the H-1 latent frames the next query may see (plus the rest of a chunk still partly inside). The
released models have one such block in each bottleneck (C = 512 at latent resolution, r = 1): per stream
2 x 512 x (H_px/sc) x (W_px/sc) x B x bytes per latent frame, 56 MiB in fp32 for a 720p frame of an 8x8
model. The cache is one block per chunk, so appending never copies it; a chunk's attention adds fp32
scores of t x (cached + t) per position, small next to the keys.

Numerics. Convolutions, norms and the first chunk's attention run the very kernels of one pass on the same
frames and give the same bits (a one-chunk stream is the one pass, bit for bit). Later chunks' attention
runs over the cached blocks (fp32 scores and sums) instead of one fused call over the whole clip, which
changes float rounding only: about 1e-6 of the output range in fp32, a bf16 rounding step in bf16.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import swish
from .layers3d import (
    CausalAttnBlock,
    CausalConv3d,
    CausalHybridDownsample3d,
    CausalHybridUpsample3d,
    CausalNormalize,
    CausalResnetBlockFactorized3d,
    CausalTemporalAttnBlock,
    avg_pool_space,
    avg_pool_time,
    prepend_first_frame,
)
from .memory_format import memory_format_of
from .patching import haar_analysis, haar_synthesis
from .video import DecoderFactorized, EncoderFactorized


@dataclass(frozen=True)
class StreamMemory:
    """Bytes a stream holds between chunks: carried conv/pool frames, and the temporal-attention cache."""

    conv: int
    attention: int

    @property
    def total(self) -> int:
        return self.conv + self.attention


class Horizon:
    """The attention horizon of one stream (latent frames, None = unlimited) and whether it has cut yet."""

    def __init__(self, latent_frames: int | None) -> None:
        if latent_frames is not None and latent_frames < 1:
            raise ValueError(f"attention_horizon must be >= 1 latent frame or None, got {latent_frames}")
        self.latent_frames = latent_frames
        self.inexact_from: int | None = None  # first latent frame whose attention missed keys

    def note_queries(self, last_latent: int) -> None:
        if self.latent_frames is not None and last_latent >= self.latent_frames and self.inexact_from is None:
            self.inexact_from = self.latent_frames


class _Op:
    """One node of a stream's tree: `op(chunk) -> output chunk`, and the tensors it carries to the next."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def parts(self) -> Iterable[_Op]:
        return ()

    def conv_state(self) -> Iterable[torch.Tensor]:
        return ()

    def attention_state(self) -> Iterable[torch.Tensor]:
        return ()


def _walk(op: _Op) -> Iterator[_Op]:
    yield op
    for part in op.parts():
        yield from _walk(part)


def _nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def memory_of(op: _Op) -> StreamMemory:
    """What a stream tree holds now (exact tensor bytes, deterministic)."""
    ops = list(_walk(op))
    return StreamMemory(
        conv=_nbytes(t for o in ops for t in o.conv_state()),
        attention=_nbytes(t for o in ops for t in o.attention_state()),
    )


class _PerFrame(_Op):
    """A module that treats every frame on its own: chunks need no state."""

    def __init__(self, module: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.module = module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


class _FirstChunkPad(_Op):
    """`count` copies of frame 0 in front of the first chunk only (the causal padding of the whole stream)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.started = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.started:
            return x
        self.started = True
        return prepend_first_frame(x, self.count)


class _TimeWindows(_Op):
    """The frames that windows of `kernel` frames every `stride` frames, counted from the stream start, read.

    `frames(chunk)` returns the (carried + new) frames that exactly cover the windows complete so far and
    keeps, as a copy, the frames the next window starts from.
    """

    def __init__(self, kernel: int, stride: int, first_pad: int) -> None:
        self.kernel, self.stride = kernel, stride
        self.pad = _FirstChunkPad(first_pad)
        self.carry: torch.Tensor | None = None

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pad(x)
        if self.carry is not None:
            x = torch.cat([self.carry, x], dim=2)
        t = x.shape[2]
        windows = (t - self.kernel) // self.stride + 1 if t >= self.kernel else 0
        start = windows * self.stride
        self.carry = x[:, :, start:].clone() if start < t else None
        return x[:, :, : (windows - 1) * self.stride + self.kernel] if windows else x[:, :, :0]

    def conv_state(self) -> Iterable[torch.Tensor]:
        return () if self.carry is None else (self.carry,)


class _StreamConv(_Op):
    """A CausalConv3d with a temporal kernel or stride, continued across chunks."""

    def __init__(self, conv: CausalConv3d) -> None:
        self.conv3d = conv.conv3d
        self.window = _TimeWindows(conv.conv3d.kernel_size[0], conv.conv3d.stride[0], conv.time_pad)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3d(self.window.frames(x))

    def parts(self) -> Iterable[_Op]:
        return (self.window,)


class _Sequence(_Op):
    def __init__(self, ops: list[_Op]) -> None:
        self.ops = ops

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x

    def parts(self) -> Iterable[_Op]:
        return self.ops


class _StreamResBlock(_Op):
    """CausalResnetBlockFactorized3d.forward with its temporal convs continued."""

    def __init__(self, block: CausalResnetBlockFactorized3d, place: _Place) -> None:
        self.block = block
        self.conv1, self.conv2 = place.wrap(block.conv1), place.wrap(block.conv2)
        self.shortcut = place.wrap(block.nin_shortcut)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        h = self.conv1(swish(b.norm1(x)))
        h = self.conv2(b.dropout(swish(b.norm2(h))))
        return self.shortcut(x) + h

    def parts(self) -> Iterable[_Op]:
        return (self.conv1, self.conv2, self.shortcut)


def _tokens(z: torch.Tensor) -> torch.Tensor:
    """[B,C,T,H,W] -> [B*H*W, 1, T, C]: one attention sequence over time per spatial position."""
    b, c, t, h, w = z.shape
    return z.permute(0, 3, 4, 2, 1).reshape(b * h * w, 1, t, c)


class _KeyValueCache:
    """Keys and values ([N, 1, frames, C]) of past frames, one block per chunk: appending never copies what
    is cached (one growing buffer would briefly exist twice), and a block is dropped once no later query
    may see any of its frames."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (global index of its first frame, k, v)

    def append(self, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.blocks.append((start, k.contiguous(), v.contiguous()))

    def drop_before(self, index: int) -> None:
        self.blocks = [block for block in self.blocks if block[0] + block[1].shape[2] > index]

    def tensors(self) -> Iterable[torch.Tensor]:
        return (t for _, k, v in self.blocks for t in (k, v))


def _attend(
    q: torch.Tensor, blocks: list[tuple[int, torch.Tensor, torch.Tensor]], allowed: Callable[[int, int], torch.Tensor]
) -> torch.Tensor:
    """Single-head attention of queries [N, 1, t, C] over key/value blocks without concatenating them;
    `allowed(start, frames)` is a block's bool mask [t, frames]. Scores and sums in fp32, as fused kernels do."""
    q = q.float() * q.shape[-1] ** -0.5
    scores = torch.cat([q @ k.float().transpose(-1, -2) for _, k, _ in blocks], dim=-1)
    mask = torch.cat([allowed(start, k.shape[2]) for start, k, _ in blocks], dim=-1)
    weights = scores.masked_fill_(~mask, float("-inf")).softmax(dim=-1)
    out, offset = None, 0
    for _, _, v in blocks:
        part = weights[..., offset : offset + v.shape[2]] @ v.float()
        out = part if out is None else out.add_(part)
        offset += v.shape[2]
    return out


class _StreamTemporalAttention(_Op):
    """CausalTemporalAttnBlock.forward over a stream: causal attention over [cached keys, chunk keys].

    `rate` is this block's frames per latent frame (1 in the bottlenecks): frame f belongs to latent frame
    ceil(f / rate), and the horizon is counted in latent frames.
    """

    def __init__(self, block: CausalTemporalAttnBlock, rate: int, horizon: Horizon) -> None:
        self.block = block
        self.rate = rate
        self.horizon = horizon
        self.cache = _KeyValueCache()
        self.frames_seen = 0

    def latent_of(self, frame: torch.Tensor | int) -> torch.Tensor | int:
        return (frame + self.rate - 1) // self.rate

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        n = b.norm(x)
        q, k, v = b.q(n), b.k(n), b.v(n)
        bsz, c, t, h, w = q.shape
        q, k, v = _tokens(q), _tokens(k), _tokens(v)
        first = self.frames_seen
        limit = self.horizon.latent_frames
        last_latent = self.latent_of(first + t - 1)
        cut = limit is not None and last_latent >= limit
        if not self.cache.blocks and not cut:  # nothing cached: the one-pass causal attention, same tensors
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            query_pos = torch.arange(first, first + t, device=x.device)[:, None]

            def allowed(start: int, frames: int) -> torch.Tensor:
                key_pos = torch.arange(start, start + frames, device=x.device)[None, :]
                mask = key_pos <= query_pos
                if cut:
                    mask &= self.latent_of(key_pos) > self.latent_of(query_pos) - limit
                return mask

            out = _attend(q, [*self.cache.blocks, (first, k, v)], allowed).to(q.dtype)
        self.cache.append(first, k, v)
        self.horizon.note_queries(last_latent)
        self.frames_seen = first + t
        if limit is not None:  # keep the keys the next query (latent of frame first+t) may still see
            next_latent = self.latent_of(first + t)
            self.cache.drop_before(max(0, (next_latent - limit) * self.rate + 1))
        out = out.reshape(bsz, h, w, t, c).permute(0, 4, 3, 1, 2)
        return x + b.proj_out(out)

    def attention_state(self) -> Iterable[torch.Tensor]:
        return self.cache.tensors()

    def bytes_per_latent_frame(self, batch: int, height: int, width: int, scale: int, dtype: torch.dtype) -> int:
        channels = self.block.k.conv3d.out_channels
        return 2 * channels * (height // scale) * (width // scale) * self.rate * batch * _itemsize(dtype)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype, device="meta").element_size()


class _StreamDownsample(_Op):
    """CausalHybridDownsample3d.forward over a stream (the spatial half is per frame)."""

    def __init__(self, down: CausalHybridDownsample3d) -> None:
        self.down = down
        if down.temporal_down:
            self.pad = _FirstChunkPad(1)
            self.conv2 = _StreamConv(down.conv2)
            self.pool = _TimeWindows(2, 2, 0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        d = self.down
        if not (d.spatial_down or d.temporal_down):
            return x
        if d.spatial_down:
            x = d.conv1(F.pad(x, (0, 1, 0, 1))) + avg_pool_space(x)
        if d.temporal_down:
            x = self.pad(x)
            x = self.conv2(x) + avg_pool_time(self.pool.frames(x))
        return d.conv3(x)

    def parts(self) -> Iterable[_Op]:
        return (self.conv2, self.pool) if self.down.temporal_down else ()


class _StreamUpsample(_Op):
    """CausalHybridUpsample3d.forward over a stream (the spatial half is per frame)."""

    def __init__(self, up: CausalHybridUpsample3d) -> None:
        self.up = up
        self.started = False
        if up.temporal_up:
            self.conv1 = _StreamConv(up.conv1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        u = self.up
        if not (u.spatial_up or u.temporal_up):
            return x
        if u.temporal_up:
            x = x.repeat_interleave(2, dim=2)
            x = x if self.started else x[:, :, 1:]
            x = self.conv1(x) + x
        self.started = True
        if u.spatial_up:
            x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
            x = u.conv2(x) + x
        return u.conv3(x)

    def parts(self) -> Iterable[_Op]:
        return (self.conv1,) if self.up.temporal_up else ()


class _Place:
    """Where in the network a module runs (frames per latent frame, pixels per position) and the stream's
    horizon: what `wrap` needs to build the streaming twin of a module."""

    def __init__(self, rate: int, scale: int, horizon: Horizon, attention: list) -> None:
        self.rate, self.scale, self.horizon, self.attention = rate, scale, horizon, attention

    def wrap(self, module: nn.Module) -> _Op:
        if isinstance(module, CausalConv3d):
            k_t, s_t = module.conv3d.kernel_size[0], module.conv3d.stride[0]
            return _PerFrame(module) if k_t == 1 and s_t == 1 else _StreamConv(module)
        if isinstance(module, (CausalNormalize, CausalAttnBlock, nn.Identity, nn.Dropout)):
            return _PerFrame(module)
        if isinstance(module, CausalTemporalAttnBlock):
            op = _StreamTemporalAttention(module, self.rate, self.horizon)
            self.attention.append((op, self.scale))
            return op
        if isinstance(module, CausalResnetBlockFactorized3d):
            return _StreamResBlock(module, self)
        if isinstance(module, nn.Sequential):
            return _Sequence([self.wrap(m) for m in module])
        if isinstance(module, CausalHybridDownsample3d):
            return _StreamDownsample(module)
        if isinstance(module, CausalHybridUpsample3d):
            return _StreamUpsample(module)
        raise TypeError(f"no streaming rule for {type(module).__name__}")


class _StreamLevel(_Op):
    """`run_level` over a stream: blocks (each with its attention), then the down/upsampler."""

    def __init__(self, level: nn.Module, place: _Place) -> None:
        self.blocks = [place.wrap(b) for b in level.block]
        self.attn = [place.wrap(a) for a in level.attn]
        self.resample = None
        for name in ("downsample", "upsample"):
            if hasattr(level, name):
                module = getattr(level, name)
                self.resample = place.wrap(module)
                _move(place, module)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            h = block(h)
            if self.attn:
                h = self.attn[i](h)
        return h if self.resample is None else self.resample(h)

    def parts(self) -> Iterable[_Op]:
        return self.blocks + self.attn + ([self.resample] if self.resample else [])


def _move(place: _Place, module: nn.Module) -> None:
    """Update the frame rate and spatial scale after a down/upsampler."""
    if isinstance(module, CausalHybridDownsample3d):
        place.rate //= 2 if module.temporal_down else 1
        place.scale *= 2 if module.spatial_down else 1
    elif isinstance(module, CausalHybridUpsample3d):
        place.rate *= 2 if module.temporal_up else 1
        place.scale //= 2 if module.spatial_up else 1


class _StreamMid(_Op):
    def __init__(self, mid: nn.Module, place: _Place) -> None:
        self.ops = [place.wrap(mid.block_1), place.wrap(mid.attn_1), place.wrap(mid.block_2)]

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            h = op(h)
        return h

    def parts(self) -> Iterable[_Op]:
        return self.ops


class StreamNetwork(_Op):
    """The streaming twin of an encoder or decoder, for one stream."""

    def __init__(self) -> None:
        self.attention: list[tuple[_StreamTemporalAttention, int]] = []

    def memory(self) -> StreamMemory:
        return memory_of(self)

    def attention_bytes_per_latent_frame(self, batch: int, height: int, width: int, dtype: torch.dtype) -> int:
        """Cache bytes each further latent frame adds, for video frames of `height` x `width` pixels."""
        return sum(op.bytes_per_latent_frame(batch, height, width, scale, dtype) for op, scale in self.attention)


class StreamEncoder(StreamNetwork):
    """EncoderFactorized.forward over a stream of 1 + k*tc, then k*tc frames per chunk."""

    def __init__(self, encoder: EncoderFactorized, horizon: Horizon, time_factor: int) -> None:
        super().__init__()
        self.encoder = encoder
        ps = encoder.patcher3d.patch_size
        place = _Place(time_factor // ps, ps, horizon, self.attention)
        self.pad = _FirstChunkPad(ps - 1)
        self.conv_in = place.wrap(encoder.conv_in)
        self.levels = [_StreamLevel(level, place) for level in encoder.down]
        self.mid = _StreamMid(encoder.mid, place)
        self.conv_out = place.wrap(encoder.conv_out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        h = self.pad(x)
        for _ in range(enc.patcher3d.rounds):
            h = haar_analysis(h, (2, 3, 4))
        h = self.conv_in(h.contiguous(memory_format=memory_format_of(enc.conv_in[0].conv3d.weight)))
        for level in self.levels:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(swish(enc.norm_out(h)))

    def parts(self) -> Iterable[_Op]:
        return [self.conv_in, *self.levels, self.mid, self.conv_out]


class StreamDecoder(StreamNetwork):
    """DecoderFactorized.forward over a stream of any number of latent frames per chunk."""

    def __init__(self, decoder: DecoderFactorized, horizon: Horizon, spatial_factor: int) -> None:
        super().__init__()
        self.decoder = decoder
        place = _Place(1, spatial_factor, horizon, self.attention)
        self.conv_in = place.wrap(decoder.conv_in)
        self.mid = _StreamMid(decoder.mid, place)
        self.levels = [_StreamLevel(level, place) for level in reversed(decoder.up)]
        self.conv_out = place.wrap(decoder.conv_out)
        self.started = False

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        dec = self.decoder
        h = self.mid(self.conv_in(z))
        for level in self.levels:
            h = level(h)
        h = self.conv_out(swish(dec.norm_out(h)))
        for _ in range(dec.unpatcher3d.rounds):
            h = haar_synthesis(h, (2, 3, 4))
        if not self.started:  # the unpatcher's ps-1 extra leading frames
            self.started = True
            h = h[:, :, dec.unpatcher3d.patch_size - 1 :]
        return h

    def parts(self) -> Iterable[_Op]:
        return [self.conv_in, self.mid, *self.levels, self.conv_out]
