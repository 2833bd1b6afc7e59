"""The Qwen2-VL adapter: transformers' Qwen2-VL image processor with APT (extra ``aptviz[qwen]``).

``from aptviz.qwen2vl import APTQwen2VLImageProcessor, APTQwen2VLProcessor``;
see :mod:`aptviz.qwen2vl.processor`. Without transformers installed, importing
this package raises one ImportError that names the extra to install.

May import: ``aptviz.compute`` and the top-level leaves.
"""

from importlib.util import find_spec

if find_spec("transformers") is None or find_spec("torch") is None:
    raise ImportError(
        "aptviz.qwen2vl needs the qwen extra: pip install 'aptviz[qwen]' "
        "(for a CPU-only machine install a CPU build of torch first; see docs/qwen2vl.md)"
    )

from aptviz.qwen2vl.processor import (  # noqa: E402
    APTQwen2VLImageProcessor,
    APTQwen2VLImageProcessorKwargs,
    APTQwen2VLProcessor,
    apt_selection,
)

__all__ = ["APTQwen2VLImageProcessor", "APTQwen2VLImageProcessorKwargs", "APTQwen2VLProcessor", "apt_selection"]
