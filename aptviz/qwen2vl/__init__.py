"""The Qwen2-VL adapter: transformers' Qwen2-VL image processor with APT (extra ``aptviz[qwen]``).

``from aptviz.qwen2vl import APTQwen2VLImageProcessor, APTQwen2VLProcessor``;
see :mod:`aptviz.qwen2vl.processor`; ``enable_apt`` and ``feature_fidelity``
(:mod:`aptviz.qwen2vl.modeling`) run the models on APT's tokens. Without transformers installed, importing
this package raises one ImportError that names the extra to install.

May import: ``aptviz.compute`` and the top-level leaves.
"""

from importlib.util import find_spec

MISSING = (
    "aptviz.qwen2vl needs the qwen extra: pip install 'aptviz[qwen]' "
    "(for a CPU-only machine install a CPU build of torch first; see docs/qwen2vl.md)"
)


def _missing(name: str) -> bool:
    try:
        return find_spec(name) is None
    except (ImportError, ValueError):  # blocked or half-installed: as if absent
        return True


if _missing("transformers") or _missing("torch"):
    raise ImportError(MISSING)

try:
    from aptviz.qwen2vl.processor import (
        APTQwen2VLImageProcessor,
        APTQwen2VLImageProcessorKwargs,
        APTQwen2VLProcessor,
        apt_selection,
    )
    from aptviz.qwen2vl.modeling import enable_apt, feature_fidelity, is_apt_enabled
except ModuleNotFoundError as exc:  # a dependency of transformers or torch is missing
    raise ImportError(f"{MISSING}: {exc}") from None

__all__ = [
    "APTQwen2VLImageProcessor",
    "APTQwen2VLImageProcessorKwargs",
    "APTQwen2VLProcessor",
    "apt_selection",
    "enable_apt",
    "feature_fidelity",
    "is_apt_enabled",
]
