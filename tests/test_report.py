"""report.html built from stats.json that may be hostile: links and scripts stay inside the image folder."""

from __future__ import annotations

from aptviz.render.report import card_data, explorer_html

OUTSIDE = ["../../evil/x.js", "/etc/x.js", "a/../../x.js", "./../x.js", "..\\x.js", "a//b.js", ""]


def _stats(**files):
    return {"image": {"path": "a.png"}, "files": files, "selections": [
        {"method": "v2", "alpha": 1.0, "files": {"overlay": files.get("overlay"), "model_view": "04/mv.jpg"}}]}


def test_links_out_of_the_image_folder_are_dropped():
    for rel in OUTSIDE:
        d = card_data("img", _stats(compare=rel, blend=rel, heatmaps={"14": rel}, overlay=rel))
        assert d["compare"] is None and d["blend"] is None and d["heat"] == [], rel
        assert d["sels"][0]["files"][0] is None and d["sels"][0]["files"][1] == "04/mv.jpg", rel
    d = card_data("img", _stats(compare="compare.png", heatmaps={"14": "01_heatmaps/h 14.png"}))
    assert d["compare"] == "compare.png" and d["heat"][0][1] == "01_heatmaps/h%2014.png"


def test_the_explorer_script_and_picture_come_from_the_image_folder_only():
    for rel in OUTSIDE:
        assert explorer_html("img", _stats(explorer=rel)) == "", rel
        html = explorer_html("img", _stats(explorer="explorer.js", resized=rel))
        assert 'data-src="img/explorer.js"' in html and "data-picture" not in html, rel
    html = explorer_html("img", _stats(explorer="explorer.js", resized="03/resized.jpg"))
    assert 'data-picture="img/03/resized.jpg"' in html


import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import unquote, urljoin  # noqa: E402

import pytest  # noqa: E402

from conftest import ROOT  # noqa: E402


@pytest.mark.skipif(os.sep == "\\", reason="a backslash is a path separator on Windows")
def test_report_links_keep_a_backslash_in_a_file_name(tmp_path):
    """A browser reads a raw backslash in a relative URL as '/': report.html must send it as %5C."""
    from typer.testing import CliRunner

    from aptviz.cli.command import app

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(ROOT / "sample_images" / "chelsea.png", src / "caf\u00e9 a\\b.png")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, [str(src), "-m", "budget:0.3", "-q", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = (out / "report.html").read_text(encoding="utf-8")
    links = re.findall(r'(?:src|href|data-src)="([^"]+)"', page)
    local = [u for u in links if not u.startswith(("#", "data:", "http"))]
    assert any("explorer.js" in u for u in local), local
    for u in local:
        assert "\\" not in u, u
        # resolve as a browser does (WHATWG: '\' is '/' in file URLs), then map back to a path
        resolved = urljoin((out / "report.html").as_uri(), u.replace("\\", "/"))
        path = Path(unquote(resolved[len("file://"):]))
        assert path.exists(), (u, path)


def test_the_card_colour_scale_is_computed_before_the_page(sample_batch):
    """Each card's heatmap scale in report.html spans its stats' per-scale min and max (computed by
    aptviz.compute.heatmaps.card_scale; the page only places the ticks)."""
    import json

    page = (sample_batch / "report.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="aptviz-data">(.*?)</script>', page, re.S).group(1))
    assert data["cards"]
    for card in data["cards"]:
        folder = data["strings"][card["base"]] if isinstance(card["base"], int) else card["base"]
        stats = json.loads((sample_batch / unquote(folder) / "stats.json").read_text())
        scales = list(stats["importance"].values())
        bar = card["bar"]
        assert bar["lo"] == min(s["min"] for s in scales) and bar["hi"] == max(s["max"] for s in scales)
        assert bar["unit"] == "bits" and bar["pad"] == any((s.get("pad_cells") or 0) > 0 for s in scales)
        assert all(0 <= t[0] <= 1 for t in bar["ticks"]) and len(bar["ticks"]) >= 2


def test_a_card_without_a_readable_range_has_no_colour_scale():
    from aptviz.compute.heatmaps import card_scale

    for importance in ({}, {"14": {"min": None, "max": None}}, {"14": {"min": True, "max": "7"}}, "x"):
        stats = dict(_stats(), importance=importance)
        assert card_scale(stats) is None
        assert card_data("img", stats, scale=card_scale(stats))["bar"] is None
    stats = dict(_stats(), importance={"14": {"min": 2.0, "max": 2.0}})
    assert card_data("img", stats, scale=card_scale(stats))["bar"]["ticks"][0][0] == 0.0  # one value: no division


def test_table_cells_show_bidi_controls_and_line_breaks_escaped():
    """A file name with U+202E (or a line separator, or a newline) is shown in the summary table as the
    terminal shows it, ``\\u202e``, not applied: raw it would show x<U+202E>gnp.exe as xexe.png."""
    import json

    from aptviz.render.report import build_report

    names = ["x\u202egnp.exe.png", "a\u2028b.png", "c\nd.png"]
    rows = [{"image": n, "status": "ok", "error": f"bad {n}"} for n in names]
    page = build_report(rows, [], ["image", "status", "error"])
    data = json.loads(re.search(r'id="aptviz-data">(.*?)</script>', page, re.S).group(1))
    table = data["table"]
    cells = [v for r in table["rows"] for v in r] + [v for d in table["dicts"] for v in (d if isinstance(d, list)
                                                                                        else [])]  # fmt: skip
    text = json.dumps(cells)
    for raw in ("\u202e", "\u2028", "\n"):
        assert raw not in "".join(str(c) for c in cells), raw
    assert "x\\\\u202egnp.exe.png" in text and "a\\\\u2028b.png" in text and "c\\\\x0ad.png" in text
