"""The few array operations aptviz needs, for NumPy arrays and torch tensors alike.

The CPU pipeline runs on NumPy and never imports torch (the command starts
in a fraction of the time); ``--device cuda`` runs the same code on torch
tensors. Nothing here imports torch unless it is handed a tensor.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "argsort_stable",
    "concat",
    "is_numpy",
    "repeat2d",
    "size",
    "to_float64",
    "to_numpy",
    "zeros_bool",
    "zeros_f64",
]


def is_numpy(a) -> bool:
    """True for NumPy arrays (the CPU backend)."""
    return isinstance(a, np.ndarray)


def to_numpy(a) -> np.ndarray:
    """A NumPy view/copy of an array or tensor (on the host)."""
    if is_numpy(a):
        return a
    return a.detach().cpu().numpy()


def size(a) -> int:
    """Number of elements."""
    return int(a.size) if is_numpy(a) else int(a.numel())


def to_float64(a):
    """The same values as float64."""
    if is_numpy(a):
        return a.astype(np.float64)
    import torch

    return a.to(torch.float64)


def zeros_bool(shape: tuple[int, ...], like):
    """An all-False grid on the same backend/device as ``like``."""
    if is_numpy(like):
        return np.zeros(shape, dtype=bool)
    import torch

    return torch.zeros(shape, dtype=torch.bool, device=like.device)


def zeros_f64(shape: tuple[int, ...], like):
    """All-zero float64 array on the same backend/device as ``like``."""
    if is_numpy(like):
        return np.zeros(shape, dtype=np.float64)
    import torch

    return torch.zeros(shape, dtype=torch.float64, device=like.device)


def repeat2d(a, ratio: int):
    """Repeat every cell ``ratio`` times along both axes."""
    if is_numpy(a):
        return np.repeat(np.repeat(a, ratio, axis=0), ratio, axis=1)
    return a.repeat_interleave(ratio, dim=0).repeat_interleave(ratio, dim=1)


def pool2x2(a, op):
    """Combine the four children of every 2x2 block with ``op`` (odd last row/column dropped).

    Examples
    --------
    >>> pool2x2(np.arange(16).reshape(4, 4), np.add).tolist()
    [[10, 18], [42, 50]]
    """
    rows, cols = a.shape[0] // 2, a.shape[1] // 2
    a = a[: 2 * rows, : 2 * cols]
    return op(op(a[0::2, 0::2], a[0::2, 1::2]), op(a[1::2, 0::2], a[1::2, 1::2]))


def concat(parts: list, axis: int = 0):
    """Concatenate along an axis."""
    if is_numpy(parts[0]):
        return np.concatenate(parts, axis=axis)
    import torch

    return torch.cat(parts, dim=axis)


def argsort_stable(a):
    """Indices that sort ``a`` ascending; equal values keep their order."""
    if is_numpy(a):
        return np.argsort(a, kind="stable")
    import torch

    return torch.sort(a, stable=True).indices


def where(cond, x, y):
    """Elementwise ``x if cond else y``."""
    if is_numpy(cond):
        return np.where(cond, x, y)
    import torch

    return torch.where(cond, x, y)


def minimum(a, b):
    """Elementwise minimum."""
    if is_numpy(a):
        return np.minimum(a, b)
    import torch

    return torch.minimum(a, b)
