"""Numbers only: one flat row per (image, selection), for datasets of any size.

:func:`image_rows` runs the same code as the main command
(:func:`aptviz.compute.analysis.analyse_loaded` and the stats.json builder) and
flattens the stats.json content into rows; nothing is drawn or written. The
rows hold plain Python values, so they travel between processes and machines
cheaply and become Parquet columns (:mod:`aptviz.datasets.parquet`) unchanged.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import dataclass
from pathlib import Path

from aptviz._log import logger
from aptviz._version import __version__
from aptviz.compute.entropy import PAD
from aptviz.compute.params import Params, RunSpec
from aptviz.compute.percentiles import PERCENTILES, exact_percentiles
from aptviz.compute.xp import to_numpy
from aptviz.errors import ROW_FAILED, ROW_OK, InputError

__all__ = [
    "PERCENTILES",
    "FIDELITY_COLUMNS",
    "InputRef",
    "failed_rows",
    "image_rows",
    "row_id",
    "run_key",
]

#: The stats.json fields ``--fidelity`` (alias ``--psnr``) adds to each row, same names: PSNR and SSIM of
#: the model view and of the uniform baselines at equal ViT tokens and at equal LLM tokens (docs/analysis.md).
FIDELITY_COLUMNS = (
    "psnr_apt", "uniform_vit_tokens", "psnr_uniform", "ssim_apt", "ssim_uniform",
    "llm_uniform_tokens", "psnr_uniform_llm", "ssim_uniform_llm",
)  # fmt: skip


@dataclass(frozen=True)
class InputRef:
    """Where one image comes from, and what identifies that exact input.

    Attributes
    ----------
    source : {"file", "parquet", "tar"}
        Kind of input.
    path : str
        The image file, or the shard (Parquet file or tar) holding it, as given.
    member : str or None
        Inside a shard: the tar member name, or the Parquet row index.
    key_path : str
        Resolved path of ``path`` (identity does not depend on the spelling).
    size, mtime_ns : int
        Size in bytes and modification time of the file or shard.
    """

    source: str
    path: str
    member: str | None
    key_path: str
    size: int
    mtime_ns: int

    @property
    def display(self) -> str:
        """The ``path`` column: the file, or ``shard::member`` for an image inside a shard.

        Examples
        --------
        >>> InputRef("tar", "a.tar", "x.jpg", "/d/a.tar", 10, 0).display
        'a.tar::x.jpg'
        """
        return self.path if self.member is None else f"{self.path}::{self.member}"

    @property
    def key(self) -> str:
        """Input identity: resolved path, member, size and mtime (as the main command's resume)."""
        return json.dumps([self.source, self.key_path, self.member, self.size, self.mtime_ns])


def _text(s: str) -> str:
    """A string Parquet can store: file names that are not UTF-8 keep their bytes as ``\\xNN``."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def run_key(params: Params, spec: RunSpec, fidelity: bool = False) -> str:
    """What makes two rows of one input comparable: version, pipeline parameters, selection, ``--fidelity``.

    The device is left out: results do not depend on it. ``fidelity`` enters the
    key only when set, so keys of runs without it are unchanged.

    Examples
    --------
    >>> run_key(Params(), RunSpec("budget", 0.3)) == run_key(Params(device="cuda"), RunSpec("budget", 0.3))
    True
    >>> run_key(Params(), RunSpec("budget", 0.3)) == run_key(Params(), RunSpec("budget", 0.3), fidelity=True)
    False
    """
    p = {k: v for k, v in params.to_dict().items() if k != "device"}
    key = {"aptviz_version": __version__, "params": p, "selection": spec.key()}
    if fidelity:
        key["fidelity"] = list(FIDELITY_COLUMNS)  # rows of the former --psnr (3 columns) do not match
    return json.dumps(key, sort_keys=True)


def row_id(input_key: str, key: str) -> int:
    """64-bit id of a row: a hash of the input identity and the run key (resume looks these up).

    Examples
    --------
    >>> row_id("a", "b") == row_id("a", "b") != row_id("a", "c")
    True
    """
    digest = hashlib.blake2b(f"{input_key}\0{key}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # fits a signed int64 column


def _importance_columns(maps: dict) -> dict:
    """Per-scale percentiles of the importance over non-PAD cells, one list entry per scale."""
    out: dict[str, list] = {f"importance_p{q}": [] for q in PERCENTILES}
    for m in maps.values():
        a = to_numpy(m)
        for q, v in zip(PERCENTILES, exact_percentiles(a[a != PAD], PERCENTILES)):
            out[f"importance_p{q}"].append(v)
    return out


def _base_row(ref: InputRef, params: Params, spec: RunSpec, fidelity: bool = False) -> dict:
    key = run_key(params, spec, fidelity)
    return {
        "row_id": row_id(ref.key, key),
        "path": _text(ref.display),
        "source": ref.source,
        "shard": None if ref.source == "file" else _text(ref.path),
        "member": None if ref.member is None else _text(ref.member),
        "input_size": ref.size,
        "input_mtime_ns": ref.mtime_ns,
        "input_key": _text(ref.key),
        "run_key": key,
        "selection": spec.label,
        "method": str(spec.method),
        "alpha": spec.alpha,
        "model": params.model,
    }


def failed_rows(ref: InputRef, params: Params, runs: list[RunSpec], error: str, fidelity: bool = False) -> list[dict]:
    """One ``failed`` row per selection, carrying the error (every number null).

    Each row names its selection's importance measure and aggregate as an ``ok``
    row would (the run's own in runs of several measures, else Params'), so the
    failed rows of ``--importance entropy,laplacian`` stay apart.
    """
    rows = []
    for spec in runs:
        row = _base_row(ref, params, spec, fidelity)
        own = spec.importance is not None
        row.update(
            status=ROW_FAILED,
            error=error,
            thresholds=list(spec.thresholds) if spec.thresholds else None,
            importance=spec.importance if own else params.importance,
            aggregate=spec.aggregate if own else params.aggregate,
        )
        rows.append(row)
    return rows


def _ok_rows(ref: InputRef, params: Params, runs: list[RunSpec], result, fidelity: bool = False) -> list[dict]:
    stats = result.stats().to_dict()  # exactly the stats.json content
    image = stats["image"]
    scales = [int(ps) for ps in stats["grid"]]
    common = {
        "status": ROW_OK,
        "error": None,
        "frames": image["frames"],
        "original_width": image["original_size"][0],
        "original_height": image["original_size"][1],
        "resized_width": image["resized_size"][0],
        "resized_height": image["resized_size"][1],
        "scales": scales,
    }
    by_measure = stats.get("importance_by_measure") or {stats["params"]["importance"]: stats["importance"]}
    measures = {}  # the columns of each measure, computed once
    for m, summaries in by_measure.items():
        ent = list(summaries.values())
        measures[m] = {
            "importance_mean": [e["mean"] for e in ent],
            "importance_min": [e["min"] for e in ent],
            "importance_max": [e["max"] for e in ent],
            "pad_cells": [e["pad_cells"] for e in ent],
            **_importance_columns(result.maps_by_measure[m]),
        }
    rows = []
    for spec, entry in zip(runs, stats["selections"]):
        by_scale = {int(ps): n for ps, n in entry["tokens_by_scale"].items()}
        budget = entry["budget_info"] or {}
        row = _base_row(ref, params, spec, fidelity)
        own = {"importance": entry["importance"], "aggregate": entry["aggregate"], **measures[entry["importance"]]}
        row.update(common, **own)
        row.update(
            thresholds=entry["thresholds"],
            tokens_by_scale=[by_scale[ps] for ps in scales],
            base_small_tokens=entry["base_small_tokens"],
            retention=entry["retention"],
            target_retention=entry["target_retention"],
            budget=budget.get("budget"),
            budget_base_tokens=budget.get("base_tokens"),
            budget_k=budget.get("k"),
            **{k: entry[k] for k in ("vit_tokens", "llm_tokens", "llm_tokens_uniform", "llm_retention")},
        )
        if fidelity:
            row.update({k: entry[k] for k in FIDELITY_COLUMNS})
        rows.append(row)
    return rows


def image_rows(
    source: bytes | str | Path,
    ref: InputRef,
    params: Params,
    runs: list[RunSpec],
    max_image_pixels: int | None = None,
    fidelity: bool = False,
) -> list[dict]:
    """The rows of one image: one per selection, ``ok`` or ``failed`` (never raises for bad input).

    Parameters
    ----------
    source : bytes or str or Path
        The encoded image, or its file.
    ref : InputRef
        Where it comes from (path, member and identity columns).
    params : Params
        Pipeline parameters (device resolved).
    runs : list of RunSpec
        Selections, as for the main command.
    max_image_pixels : int, optional
        Decompression-bomb limit (default: as the main command, from ``params.max_pixels``).
    fidelity : bool
        Also compute the model views and add :data:`FIDELITY_COLUMNS` (stats.json's
        ``psnr_apt``, ``uniform_vit_tokens``, ``psnr_uniform``, ``ssim_apt``,
        ``ssim_uniform``, ``llm_uniform_tokens``, ``psnr_uniform_llm``,
        ``ssim_uniform_llm``); several times slower.

    Returns
    -------
    list of dict
        Same numbers as the main command's stats.json, flattened; see
        :data:`aptviz.datasets.parquet.ROW_FIELDS` for the columns.

    Examples
    --------
    >>> from aptviz.compute.params import expand_runs
    >>> ref = InputRef("file", "sample_images/chelsea.png", None, "chelsea.png", 0, 0)
    >>> [row] = image_rows("sample_images/chelsea.png", ref, Params(), expand_runs(["budget"], [0.3]))
    >>> row["status"], row["vit_tokens"], row["llm_tokens"], row["tokens_by_scale"]
    ('ok', 209, 98, [148, 35, 26])
    """
    from aptviz.compute.analysis import analyse_loaded  # not aptviz.pipeline: rows draw nothing (no render import)
    from aptviz.compute.loading import decode_limit, open_image, open_image_bytes
    from aptviz.compute.video import analyse_video, is_video

    limit = decode_limit(params.max_pixels) if max_image_pixels is None else max_image_pixels
    try:
        if not isinstance(source, bytes | bytearray | memoryview) and is_video(source):  # docs/video.md: totals
            return _ok_rows(ref, params, runs, analyse_video(source, runs, params, limit), fidelity)
        if isinstance(source, bytes | bytearray | memoryview):
            loaded = open_image_bytes(bytes(source), limit)
        else:
            loaded = open_image(source, limit)
        result = analyse_loaded(ref.display, loaded, runs, params, views=fidelity, sweep=False)  # views: PSNR, SSIM
        return _ok_rows(ref, params, runs, result, fidelity)
    except InputError as exc:
        error = str(exc)
    except MemoryError:
        error = "out of memory"
    except Exception as exc:  # a bug: still one row, the rest of the dataset goes on
        error = f"internal error: {type(exc).__name__}: {exc}"
        logger.debug("{}: {}", ref.display, traceback.format_exc())
    logger.debug("{}: {}", ref.display, error)
    return failed_rows(ref, params, runs, error, fidelity)
