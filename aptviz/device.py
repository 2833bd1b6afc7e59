"""Choosing the compute device (torch is imported only when asked)."""

from __future__ import annotations

from .errors import ParameterError

__all__ = ["resolve_device"]


def resolve_device(device: str = "auto") -> str:
    """Turn ``auto`` into ``cuda`` or ``cpu``; refuse ``cuda`` without a GPU.

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    """
    device = (device or "auto").lower()
    if device == "cpu":
        return device
    if device != "auto" and not device.startswith("cuda"):
        raise ParameterError(f"unknown device {device!r} (choose auto, cpu or cuda)")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ParameterError("--device cuda was asked for but no CUDA GPU is available (use --device cpu)")
    return device
