"""Choosing the compute device (torch is imported only when asked)."""

from __future__ import annotations

from aptviz.errors import ParameterError, require_torch

__all__ = ["resolve_device"]

_DRIVER_MARKERS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def _cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is visible (device nodes or /proc entry).

    torch.cuda.is_available() needs one; checking first lets a CPU-only
    machine skip importing torch (about a second).
    """
    import glob
    import os

    return any(os.path.exists(p) for p in _DRIVER_MARKERS) or bool(glob.glob("/dev/nvidia[0-9]*"))


def resolve_device(device: str = "auto") -> str:
    """Turn ``auto`` into ``cuda`` or ``cpu``; refuse ``cuda`` without a GPU or without torch.

    The one place where a device is resolved (``Params.resolved`` calls it,
    with a name already normalized by ``aptviz.compute.params.parse_device``).

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    """
    if device == "cpu":
        return device
    if device == "auto":
        if not _cuda_driver_present():  # no NVIDIA driver: no need to import torch to know
            return "cpu"
        try:
            import torch
        except ImportError:  # a GPU but the plain install: NumPy on the CPU gives the same numbers
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    torch = require_torch("--device cuda")

    if not torch.cuda.is_available():
        raise ParameterError("--device cuda was asked for but no CUDA GPU is available (use --device cpu)")
    return device
