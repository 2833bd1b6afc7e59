"""Pipeline parameters and the list of selections to run, validated up front."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import ParameterError
from .resize import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

__all__ = ["DEFAULT_THRESHOLDS", "Params", "RunSpec", "expand_runs"]

DEFAULT_THRESHOLDS = (3.0, 2.0)
MAX_BINS = 4096  # histograms take cells x bins integers: keep them within memory
MAX_COARSEST = 1024  # largest patch side in pixels


@dataclass(frozen=True)
class Params:
    """Image-pipeline parameters (SPEC §1), recorded in stats.json ``params``.

    Examples
    --------
    >>> Params().factor
    28
    """

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    num_scales: int = 3
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    bins: int = 512
    device: str = "cpu"

    @property
    def factor(self) -> int:
        """``patch_size * merge_size``: both resized sides are multiples of it."""
        return self.patch_size * self.merge_size

    @property
    def scales(self) -> list[int]:
        """Patch size of every scale, finest first."""
        return [self.patch_size * 2**i for i in range(self.num_scales)]

    def validate(self) -> Params:
        """Raise :class:`ParameterError` for any value out of range; return self."""
        minimum = {
            "patch_size": 1,
            "merge_size": 1,
            "temporal_patch_size": 1,
            "num_scales": 1,
            "min_pixels": 1,
            "max_pixels": 1,
            "bins": 1,
        }
        for name, lo in minimum.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < lo:
                raise ParameterError(f"{name.replace('_', '-')} must be an integer >= {lo}, got {value!r}")
        if self.bins > MAX_BINS:
            raise ParameterError(f"bins must be <= {MAX_BINS}, got {self.bins}")
        coarsest = self.patch_size * 2 ** (self.num_scales - 1) if self.num_scales <= 16 else None
        if coarsest is None or coarsest > MAX_COARSEST:
            raise ParameterError(
                f"the coarsest patch (patch-size * 2**(num-scales - 1)) must be <= {MAX_COARSEST} px, "
                f"got patch-size {self.patch_size} with {self.num_scales} scales"
            )
        if self.min_pixels > self.max_pixels:
            raise ParameterError(f"min-pixels ({self.min_pixels}) must not exceed max-pixels ({self.max_pixels})")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ParameterError(f"device must be auto, cpu or cuda, got {self.device!r}")
        return self

    def to_dict(self) -> dict:
        """The ``params`` object of stats.json."""
        return asdict(self)


@dataclass(frozen=True)
class RunSpec:
    """One selection to run on every image: a method and its alpha/thresholds."""

    method: str
    alpha: float | None = None
    thresholds: tuple[float, ...] | None = None

    @property
    def label(self) -> str:
        """File-name friendly id: ``v1``, ``v2_alpha1``, ``budget_alpha0.3``.

        The alpha is written in full (shortest exact form), so two different
        alphas never share a file name.

        Examples
        --------
        >>> RunSpec("budget", 0.1234567).label, RunSpec("v2", 1.0).label
        ('budget_alpha0.1234567', 'v2_alpha1')
        """
        if self.alpha is None:
            return self.method
        text = repr(float(self.alpha))
        return f"{self.method}_alpha{text[:-2] if text.endswith('.0') else text}"

    def key(self) -> dict:
        """What identifies this selection in stats.json (for resuming)."""
        return {
            "method": self.method,
            "alpha": self.alpha,
            "thresholds": list(self.thresholds) if self.thresholds is not None else None,
        }


def expand_runs(
    methods=("v1",),
    alphas=(1.0,),
    thresholds=DEFAULT_THRESHOLDS,
    num_scales: int = 3,
) -> list[RunSpec]:
    """Every (method, alpha) combination, validated; v1 takes no alpha.

    Parameters
    ----------
    methods : sequence of {"v1", "v2", "budget"}
    alphas : sequence of float
        v2: threshold multiplier (>= 0); budget: target retention in [0, 1].
    thresholds : sequence of float
        v1 thresholds, one per scale above the finest.
    num_scales : int
        Number of scales (to check the threshold count).

    Returns
    -------
    list of RunSpec
        In the order given, duplicates removed.

    Examples
    --------
    >>> [r.label for r in expand_runs(["v1", "budget"], [0.2, 0.4])]
    ['v1', 'budget_alpha0.2', 'budget_alpha0.4']
    """
    methods = list(methods) or ["v1"]
    alphas = [float(a) for a in alphas] or [1.0]
    runs: list[RunSpec] = []
    for method in methods:
        method = getattr(method, "value", method)
        if method == "v1":
            thr = tuple(float(t) for t in thresholds)
            if len(thr) != num_scales - 1:
                raise ParameterError(
                    f"--thresholds needs {num_scales - 1} value(s) for {num_scales} scales, got {len(thr)}"
                )
            if any(math.isnan(t) for t in thr):
                raise ParameterError("thresholds must be numbers")
            spec = RunSpec("v1", None, thr)
            if spec not in runs:
                runs.append(spec)
            continue
        if method not in ("v2", "budget"):
            raise ParameterError(f"unknown method {method!r} (choose v1, v2 or budget)")
        for alpha in alphas:
            if math.isnan(alpha) or math.isinf(alpha):
                raise ParameterError(f"alpha must be a finite number, got {alpha}")
            if method == "budget" and not 0.0 <= alpha <= 1.0:
                raise ParameterError(f"budget alpha must be in [0, 1], got {alpha:g}")
            if method == "v2" and alpha < 0:
                raise ParameterError(f"v2 alpha must be >= 0, got {alpha:g}")
            spec = RunSpec(method, alpha)
            if spec not in runs:
                runs.append(spec)
    return runs
