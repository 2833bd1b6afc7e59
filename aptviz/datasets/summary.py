"""``aptviz stats-summary``: aggregates of a stats dataset, per selection, with pyarrow compute.

Only the needed columns are read, and every statistic is an Arrow kernel:
millions of rows never become Python objects.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from aptviz.datasets.parquet import part_files, require_pyarrow
from aptviz.datasets.rows import FIDELITY_COLUMNS
from aptviz.errors import InputError
from aptviz.output.atomic import write_json_atomic

__all__ = ["SelectionSummary", "summarize", "write_summary_json"]

COLUMNS = [
    "path",
    "input_mtime_ns",
    "selection",
    "method",
    "alpha",
    "run_key",
    "status",
    "retention",
    "llm_retention",
    "vit_tokens",
    "base_small_tokens",
    "llm_tokens",
    "llm_tokens_uniform",
]
#: Means reported per selection when the rows have them (``aptviz stats --fidelity``).
FIDELITY_MEANS = FIDELITY_COLUMNS


@dataclass(frozen=True)
class SelectionSummary:
    """Aggregates over the images of one selection (``ok`` rows; ``failed`` counted apart)."""

    selection: str
    method: str
    alpha: float | None
    params: dict
    images: int
    failed: int
    retention_mean: float | None
    retention_median: float | None
    retention_p5: float | None
    retention_p95: float | None
    llm_retention_mean: float | None
    llm_retention_median: float | None
    llm_retention_p5: float | None
    llm_retention_p95: float | None
    vit_tokens: int
    vit_tokens_uniform: int
    vit_tokens_saved: int
    llm_tokens: int
    llm_tokens_uniform: int
    llm_tokens_saved: int
    # means over the ok rows that have the value (--fidelity; None without it). PSNR is null for a
    # lossless view and such rows are left out of the PSNR means (an infinite dB would swamp them)
    psnr_apt_mean: float | None = None
    uniform_vit_tokens_mean: float | None = None
    psnr_uniform_mean: float | None = None
    ssim_apt_mean: float | None = None
    ssim_uniform_mean: float | None = None


def _latest(pc, table):
    """Only the rows of each path's latest version (a file changed and re-run leaves its old rows in OUT)."""
    latest = table.group_by(["path", "run_key"], use_threads=False).aggregate([("input_mtime_ns", "max")])
    joined = table.join(latest, ["path", "run_key"], use_threads=False)
    return joined.filter(pc.equal(joined["input_mtime_ns"], joined["input_mtime_ns_max"]))


def _stats(pc, column) -> dict:
    """mean, median (exact), p5 and p95 (linear interpolation, as NumPy's default)."""
    if len(column) == 0:
        return {"mean": None, "median": None, "p5": None, "p95": None}
    q = pc.quantile(column, q=[0.5, 0.05, 0.95], interpolation="linear").to_pylist()
    return {"mean": pc.mean(column).as_py(), "median": q[0], "p5": q[1], "p95": q[2]}


def _total(pc, column) -> int:
    return int(pc.sum(column).as_py() or 0)


def summarize(out: str | Path) -> list[SelectionSummary]:
    """Per selection (and parameter set): retention statistics, tokens saved, failed count.

    An image whose file changed between runs has rows of both versions in
    OUT; only the latest version's rows count.

    Parameters
    ----------
    out : str or Path
        A dataset written by ``aptviz stats``.

    Returns
    -------
    list of SelectionSummary
        In the order selections first appear in the files.

    Raises
    ------
    InputError
        When ``out`` holds no part file.
    """
    pa = require_pyarrow()
    import pyarrow.compute as pc
    import pyarrow.dataset as pds
    import pyarrow.parquet as pq

    files = part_files(out)
    if not files:
        raise InputError(f"{out}: no part-*.parquet files (not an aptviz stats output?)")
    # parts written with and without --fidelity differ in columns: read them under their union
    schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    fidelity = [c for c in FIDELITY_MEANS if c in schema.names]
    table = pds.dataset([str(f) for f in files], schema=schema, format="parquet").to_table(columns=COLUMNS + fidelity)
    groups = table.select(["run_key"]).group_by("run_key", use_threads=False).aggregate([]).column("run_key")
    table = _latest(pc, table)
    result = []
    for key in groups.to_pylist():
        sub = table.filter(pc.equal(table.column("run_key"), pa.scalar(key)))
        ok = sub.filter(pc.equal(sub.column("status"), "ok"))
        meta = json.loads(key)
        r, lr = _stats(pc, ok.column("retention")), _stats(pc, ok.column("llm_retention"))
        vit, vit_u = _total(pc, ok.column("vit_tokens")), _total(pc, ok.column("base_small_tokens"))
        llm, llm_u = _total(pc, ok.column("llm_tokens")), _total(pc, ok.column("llm_tokens_uniform"))
        result.append(
            SelectionSummary(
                selection=sub.column("selection")[0].as_py(),
                method=sub.column("method")[0].as_py(),
                alpha=sub.column("alpha")[0].as_py(),
                params=meta["params"],
                images=ok.num_rows,
                failed=sub.num_rows - ok.num_rows,
                **{f"retention_{k}": v for k, v in r.items()},
                **{f"llm_retention_{k}": v for k, v in lr.items()},
                vit_tokens=vit,
                vit_tokens_uniform=vit_u,
                vit_tokens_saved=vit_u - vit,
                llm_tokens=llm,
                llm_tokens_uniform=llm_u,
                llm_tokens_saved=llm_u - llm,
                **{f"{c}_mean": pc.mean(ok.column(c)).as_py() for c in fidelity},
            )
        )
    return result


def write_summary_json(summaries: list[SelectionSummary], path: str | Path) -> None:
    """Write the summaries as JSON (atomically)."""
    write_json_atomic(Path(path), {"selections": [asdict(s) for s in summaries]})
