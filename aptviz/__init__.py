"""aptviz: see where Adaptive Patch Tokenization puts its patches.

The public API (docs/pipeline.md §3)::

    aptviz.smart_resize(height, width, factor=28, min_pixels=3136, max_pixels=1003520)
    aptviz.load_image(path)
    aptviz.resize_image(image, factor=28, min_pixels=3136, max_pixels=1003520)
    aptviz.entropy_maps(image, patch_size=14, num_scales=3, bins=512, device="cpu")
    aptviz.importance_maps(image, measure="entropy", aggregate="mean", patch_size=14, ...)
    aptviz.select_patches(maps, method="v1", alpha=1.0, thresholds=(3.0, 2.0))
    aptviz.analyze(path, selections="v1", model="qwen2-vl", **params) -> ImageResult (typed; also the stats dict)
    aptviz.run(inputs, output, selections, params, workers, on_progress=...) -> RunReport
    aptviz.explore(image_or_path, selection="v2", **params) -> Explorer   # live, in a notebook
    aptviz.calibrate(inputs, selection="v2", target=0.3, **params) -> Calibration

Selections are given one way everywhere: text as on the command line
(``"budget:0.3"``, ``"v2:0.8,1"``, ``"v1"``) or :class:`RunSpec` objects.

Heavy modules (torch, matplotlib) are imported on first use only.
"""

from __future__ import annotations

from importlib import import_module

from aptviz._version import __version__

__all__ = [
    "PAD",
    "Device",
    "Method",
    "Model",
    "Params",
    "RunReport",
    "RunSpec",
    "Selection",
    "Status",
    "__version__",
    "analyze",
    "calibrate",
    "entropy_maps",
    "explore",
    "importance_maps",
    "load_image",
    "resize_image",
    "run",
    "select_patches",
    "smart_resize",
]

_LAZY = {
    "smart_resize": "compute.resize",
    "resize_image": "compute.resize",
    "load_image": "compute.loading",
    "entropy_maps": "compute.entropy",
    "importance_maps": "compute.importance",
    "PAD": "compute.entropy",
    "select_patches": "compute.selection",
    "Selection": "compute.selection",
    "analyze": "pipeline",
    "calibrate": "runs.calibrate",
    "explore": "runs.explore",
    "run": "runs.runner",
    "Params": "compute.params",
    "RunSpec": "compute.params",
    "Method": "compute.params",
    "Device": "compute.params",
    "Model": "compute.presets",
    "RunReport": "runs.results",
    "Status": "errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
