"""Live tensor memory of the ops run inside a context, counted by storage: what a training step allocates.

Every storage an op creates is counted once, from its creation until Python frees it (a weak reference's
finalizer), so the peak is what a caching allocator must hold at once, fragmentation aside. It runs under
FakeTensorMode too, where storages have sizes but no memory: the planner's way to measure a step of a
full-size network on any machine (docs/design.md#memory-planner). Storages that exist before the context
(the weights) are registered with `ignore` so views of them are not counted as new memory.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """A dispatch mode keeping the live bytes of the storages created inside it, their peak, and the gradients'."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.grads = 0  # live bytes of storages marked as gradients
        self.peak_without_grads = 0  # the peak of live - grads: activations and temporaries only
        self._sizes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._grad_storages: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def ignore(self, tensors: Any) -> None:
        """Storages that existed before (weights, buffers): never counted, not even through their views."""
        for tensor in tree_flatten(tensors)[0]:
            if isinstance(tensor, torch.Tensor):
                self._sizes.setdefault(tensor.untyped_storage(), 0)

    def mark_grad(self, tensor: torch.Tensor) -> None:
        """Count an already-counted storage as a gradient from now on (a post-accumulate-grad hook calls it)."""
        storage = tensor.untyped_storage()
        size = self._sizes.get(storage, 0)
        if size and storage not in self._grad_storages:
            self._grad_storages[storage] = size
            self.grads += size
            weakref.finalize(storage, self._free_grad, size)

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage in self._sizes:
            return
        size = storage.nbytes()
        self._sizes[storage] = size
        self.live += size
        self.peak = max(self.peak, self.live)
        self.peak_without_grads = max(self.peak_without_grads, self.live - self.grads)
        weakref.finalize(storage, self._free, size)

    def _free(self, size: int) -> None:
        self.live -= size

    def _free_grad(self, size: int) -> None:
        self.grads -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._count(value)
        return out


MARK_BYTES = 7_777_777  # an allocation of this odd size marks a moment in the profiler's allocation log


class AllocationLog:
    """Every allocation and free of torch's CPU allocator inside a `with` (torch.profiler's memory events),
    for measuring a real step's peak independently of `LiveBytes`: `mark()`, run the step, then `peak_since_mark`."""

    def __enter__(self) -> AllocationLog:
        from torch.profiler import ProfilerActivity, profile

        self._profile = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._profile.__enter__()
        return self

    def mark(self) -> None:
        """Note this moment (one allocation of MARK_BYTES, freed at once)."""
        torch.empty(MARK_BYTES, dtype=torch.uint8)  # freed at once: a +MARK_BYTES, -MARK_BYTES pair

    def __exit__(self, *exc: object) -> None:
        self._profile.__exit__(*exc)
        events = [e for e in self._profile.profiler.kineto_results.events() if e.name() == "[memory]"]
        self._sizes = [e.nbytes() for e in sorted(events, key=lambda e: e.start_ns())]

    def peak_since_mark(self) -> tuple[int, int]:
        """(bytes live at the last mark, their peak after it), counting only what was allocated inside the `with`."""
        live, at_mark, peak, marked = 0, 0, 0, False
        for size in self._sizes:
            if size == MARK_BYTES:
                at_mark, peak, marked = live, live, True
                continue
            if size == -MARK_BYTES:
                continue
            live += size
            peak = max(peak, live)
        if not marked:
            raise RuntimeError("AllocationLog.peak_since_mark: mark() was not called inside the with block")
        return at_mark, peak
