"""Which GPU a trial got, as torch sees it: its name and memory.

A study lists several GPU types (the first one with capacity wins, and a
resumed attempt may land on another), so an objective that sizes its batch
must check it against the GPU it actually got, at once, rather than run out
of memory an hour in. :func:`current_gpu` reads it; objectives take it as an
argument so tests inject any GPU on a CPU-only machine.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class GpuInfo:
    """One GPU: its name and total memory in bytes, as ``torch.cuda.get_device_properties`` reports them."""

    name: str
    total_memory: int

    @property
    def gib(self) -> float:
        """Total memory in GiB (what F5-TTS's sizing rule calls "GB")."""
        return self.total_memory / GIB

    def describe(self) -> str:
        return f"{self.name} ({self.gib:.1f} GiB)"


def current_gpu() -> GpuInfo | None:
    """The CUDA device this process trains on, or None without CUDA (a CPU run)."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return GpuInfo(name=str(props.name), total_memory=int(props.total_memory))
