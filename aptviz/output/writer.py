"""The writer of one image folder: removes stats.json, writes the files, writes stats.json last.

It computes nothing: it is given the complete stats (``files`` filled in from
:mod:`aptviz.output.layout`), the pictures keyed by relative path, and the
arrays of maps.npz / tokens.npz. A picture is either encoded bytes (written
as they are) or an object with ``pixels`` (an RGB uint8 array), ``quality``
(JPEG) and ``chroma_444``, encoded here by the file's suffix.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from aptviz.compute.stats import ImageStats
from aptviz.output.atomic import (
    clean_stale_temp_files,
    encode_image,
    write_bytes_atomic,
    write_json_atomic,
    write_npz_atomic,
    write_npz_stream_atomic,
)
from aptviz.output.layout import (
    EXPLORER_NAME,
    HEATMAP_DIR,
    MAPS_NAME,
    MODEL_VIEW_DIR,
    OVERLAY_DIR,
    STATS_NAME,
    TOKENS_NAME,
    kept_views,
)

__all__ = ["maps_arrays", "write_image_folder", "write_picture"]


def maps_arrays(analysis) -> dict:
    """maps.npz: the importance maps (``<measure>_<P>``) and every mask (``mask_<label>_<P>``)."""
    arrays = {f"{measure}_{ps}": m for measure, maps in analysis.maps_by_measure.items() for ps, m in maps.items()}
    for s in analysis.selections:
        for ps, mask in s.selection.masks.items():
            arrays[f"mask_{s.label}_{ps}"] = mask
    return arrays


def write_picture(path: str | Path, picture) -> Path:
    """Write one picture (encoded bytes, or pixels encoded by the path's suffix) atomically."""
    path = Path(path)
    if isinstance(picture, (bytes, bytearray, memoryview)):
        return write_bytes_atomic(path, bytes(picture))
    data = encode_image(picture.pixels, path.suffix, picture.quality, picture.chroma_444)
    return write_bytes_atomic(path, data)


def write_image_folder(
    out_dir: str | Path,
    stats: ImageStats,
    pictures: Iterable[tuple[str, object]],
    maps: dict | None = None,
    tokens: Iterable | None = None,
) -> ImageStats:
    """Write one image's folder; stats.json goes first and comes back last.

    Parameters
    ----------
    out_dir : str or Path
        The image's folder (``OUTPUT/<name>``).
    stats : ImageStats
        Complete, ``files`` filled in; written as they are.
    pictures : iterable of (str, picture)
        Relative path and picture; consumed one at a time (a large image's
        pictures are never all in memory).
    maps : dict, optional
        maps.npz arrays (:func:`maps_arrays`), written when ``stats.files`` lists maps.
    tokens : iterable of (str, ndarray), optional
        tokens.npz arrays, streamed, written when ``stats.files`` lists tokens.

    Returns
    -------
    ImageStats
        ``stats``.
    """
    out = Path(out_dir)
    if out.is_dir():
        # from here on the folder no longer describes an earlier run: its stats.json goes first,
        # so a run stopped half-way (kill -9, full disk) leaves a folder that is redone, never trusted
        (out / STATS_NAME).unlink(missing_ok=True)
        clean_stale_temp_files(out)  # left by killed writers; a live run's files are kept
    for rel, picture in pictures:
        write_picture(out / rel, picture)
        del picture
    files = stats.files or {}
    if files.get("maps"):
        write_npz_atomic(out / files["maps"], maps)
    if files.get("tokens"):
        write_npz_stream_atomic(out / files["tokens"], tokens)
    write_json_atomic(out / STATS_NAME, stats.to_dict())
    _remove_stale(out, stats)
    return stats


def _remove_stale(out: Path, stats: ImageStats) -> None:
    """Files of an earlier run with other selections or options no longer belong here."""
    overlays = {Path(sel.files["overlay"]).name for sel in stats.selections if sel.files.get("overlay")}
    files = stats.files or {}
    keep = kept_views(stats) | set(files.get("heatmaps", {}).values())
    keep |= {rel for per in files.get("heatmaps_by_measure", {}).values() for rel in per.values()}
    stale = [*(out / OVERLAY_DIR).glob("patches_*.*"), *(out / MODEL_VIEW_DIR).glob("*.jpg")]
    stale += (out / HEATMAP_DIR).glob("importance_map_*.png")  # another run's measures
    for old in stale:
        if old.name not in overlays and old.relative_to(out).as_posix() not in keep:
            old.unlink(missing_ok=True)
    for old in out.glob("compare.*"):  # the comparison figure of an earlier run in another format
        if old.name != files.get("compare") and old.suffix in (".png", ".pdf", ".svg"):
            old.unlink(missing_ok=True)
    if not files.get("maps"):
        (out / MAPS_NAME).unlink(missing_ok=True)
    if not files.get("tokens"):
        (out / TOKENS_NAME).unlink(missing_ok=True)
    if not files.get("explorer"):
        (out / EXPLORER_NAME).unlink(missing_ok=True)
