"""output/layout.py: the one list of batch figures (names, captions) the runner, dataset view and report use."""

import html

from aptviz.output.layout import BATCH_FIGURES, shown_figures

from conftest import invoke, small_images


def test_every_batch_figure_written_is_shown_with_its_caption(tmp_path):
    src = small_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    r = invoke(src, "-m", "v1", "-m", "budget", "-a", "0.3", "--figure-format", "svg", "-o", out)
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in out.glob("*.svg"))
    stems = [f.stem for f in BATCH_FIGURES]
    assert written and all(p.split(".")[0] in stems for p in written)
    shown = shown_figures(p.name for p in out.iterdir())
    assert sorted(name for name, _ in shown) == written
    page = (out / "report.html").read_text(encoding="utf-8")
    positions = [page.index(f'alt="{html.escape(caption)}"') for _, caption in shown]
    assert positions == sorted(positions)  # in the list's order
