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
