"""report.html opened in a real headless Chromium (Debian's package, driven by Playwright).

Skipped, with the reason shown, when Playwright or the browser is missing
(.ci/run installs both).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aptviz.cli.command import app

from conftest import ROOT

CHROMIUM = os.environ.get("APTVIZ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def report(sample_batch):
    """report.html of the session's one batch over sample_images (``-m v2:1,1.2 -m budget:0.3``, conftest)."""
    return sample_batch / "report.html"


@pytest.fixture(scope="module")
def browser(chromium):
    """The session's one Chromium (conftest)."""
    return chromium


@pytest.fixture(scope="module")
def page(report, browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    pg.goto(report.as_uri(), wait_until="load")
    pg.errors = errors
    yield pg
    pg.close()


def _load_all(pg) -> None:
    """Scroll every lazy image into view and wait until each has finished loading."""
    for handle in pg.query_selector_all("img"):
        handle.scroll_into_view_if_needed()
    pg.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=20000)


def test_every_image_loads_without_console_errors(page, report):
    _load_all(page)
    sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert len(sizes) >= 3 * 6 + 2  # per image: 3 heatmaps, blend, overlay, model view, uniform; dataset figures
    assert all(width > 0 for _, width in sizes), [s for s, w in sizes if not w]
    assert all(not src.startswith(("http", "data:")) for src, _ in sizes)  # relative links, nothing inlined
    assert page.errors == []
    html = report.read_text()
    assert "http://" not in html and "https://" not in html  # no network
    page.screenshot(path=str(report.parent / "report_screenshot.png"))


def test_selector_swaps_overlay_and_numbers(page):
    card = page.query_selector(".card")
    card.scroll_into_view_if_needed()
    page.wait_for_selector(".card[data-done] select")
    overlay = card.query_selector('img[data-k="overlay"]')
    tokens = card.query_selector('td[data-n="tokens"]')
    before = (overlay.get_attribute("src"), tokens.inner_text())
    options = card.eval_on_selector("select", "s => s.options.length")
    assert options == 3
    card.query_selector("select").select_option("2")
    after = (overlay.get_attribute("src"), tokens.inner_text())
    assert after[0] != before[0] and "budget_alpha0.3" in after[0]
    assert after[1] != before[1]
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=overlay)
    view = card.query_selector('img[data-k="model_view"]').get_attribute("src")
    assert view.endswith("model_view_budget_alpha0.3.jpg")


def _column(page, col: int) -> list[str]:
    return page.eval_on_selector_all(f"table.sum tbody tr td:nth-child({col + 1})", "t => t.map(x => x.textContent)")


def test_table_sorts_by_any_column(page):
    names = page.eval_on_selector_all("table.sum th", "ths => ths.map(t => t.getAttribute('title'))")
    labels = page.eval_on_selector_all("table.sum th", "ths => ths.map(t => t.textContent)")
    assert "base_small_tokens" in names and "base_small_tokens" not in labels  # headers in words
    assert labels[names.index("psnr_apt")] == "PSNR of APT's view (dB)"
    col = names.index("retention")
    page.click(f"table.sum th:nth-child({col + 1})")
    values = [float(v) for v in _column(page, col)]
    assert values == sorted(values) and len(values) == 9
    page.click(f"table.sum th:nth-child({col + 1})")
    assert [float(v) for v in _column(page, col)] == sorted(values, reverse=True)
    img_col = names.index("image")
    page.click(f"table.sum th:nth-child({img_col + 1})")
    shown = _column(page, img_col)
    assert shown == sorted(shown)


# ---------------------------------------------------------------- a moved report, on a phone and a desktop

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}


def _open(browser, path: Path, **context):
    ctx = browser.new_context(**(context or {"viewport": {"width": 1400, "height": 900}}))
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    pg.goto(path.as_uri(), wait_until="load")
    pg.errors = errors
    return pg


def _fill_and_load(pg) -> list:
    """Build every card (as printing does), load every image; return [src, naturalWidth] per image."""
    pg.evaluate("window.APTVIZ && document.querySelectorAll('.card[data-i]').forEach(c => window.APTVIZ.fill(c))")
    _load_all(pg)
    return pg.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")


@pytest.fixture(scope="module")
def moved(report, tmp_path_factory):
    """The whole output folder moved elsewhere (as a zip would be unpacked)."""
    target = tmp_path_factory.mktemp("moved") / "elsewhere"
    shutil.copytree(report.parent, target)
    away = report.parent.with_name(report.parent.name + "-away")
    report.parent.rename(away)  # nothing left where it was written
    try:
        yield target / "report.html"
    finally:
        away.rename(report.parent)


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_moved_report_fits_the_screen_and_every_image_loads(moved, device, browser):
    pg = _open(browser, moved, **(PHONE if device == "phone" else {}))
    assert pg.eval_on_selector('meta[name="viewport"]', "m => m.content").startswith("width=device-width")
    sizes = _fill_and_load(pg)
    assert len(sizes) >= 3 * 6 + 2 and all(w > 0 for _, w in sizes), [s for s, w in sizes if not w]
    assert all(not s.startswith(("/", "file:", "http")) for s, _ in sizes)  # relative to the report
    width = pg.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page scrolls sideways: {width}"
    box = pg.eval_on_selector(".wrap", "w => [w.scrollWidth, w.clientWidth]")
    if device == "phone":
        assert box[0] > box[1]  # the wide table scrolls inside its own box instead
    pg.screenshot(path=str(moved.parent / f"report_{device}.png"), full_page=False)
    assert pg.errors == []
    pg.context.close()


# ---------------------------------------------------------------- hostile values never run

ATTACKS = [
    '<img src=x onerror="window.__pwned=1">',
    "</script><script>window.__pwned=1</script>",
    '"><svg onload=window.__pwned=1>',
    "javascript:window.__pwned=1",
    "'-alert(1)-'",
]


def _plant(stats: dict, attack: str) -> dict:
    """Put ``attack`` into every stats.json field the report shows."""
    stats["image"]["path"] = attack
    stats["image"]["frames"] = [attack]
    stats["image"]["original_size"] = [attack, attack]
    stats["image"]["resized_size"] = [attack, 7]
    stats["params"]["importance"] = attack
    stats["params"]["aggregate"] = attack
    for entry in stats["importance"].values():
        entry.update(min=attack, max=attack, pad_cells=attack)
    stats["files"]["blend"] = attack
    stats["files"]["compare"] = attack
    stats["files"]["heatmaps"] = {attack: attack, "14": stats["files"]["heatmaps"]["14"]}
    for sel in stats["selections"]:
        sel["method"] = attack
        sel["alpha"] = attack
        for key in ("tokens", "retention", "llm_tokens", "llm_retention", "target_retention", "psnr_apt",
                    "uniform_vit_tokens", "psnr_uniform"):
            sel[key] = attack
        sel["files"] = {"overlay": attack, "model_view": attack, "uniform": sel["files"]["uniform"]}
    return stats


def test_no_script_runs_from_a_planted_stats_json_or_summary(tmp_path, make_image, browser):
    import json

    from typer.testing import CliRunner

    from aptviz.render.report import build_report, output_links, report_cards

    folder = tmp_path / "in"
    folder.mkdir()
    named = make_image("in/x'\"<b onmouseover=window.__pwned=1>.png")  # a file name that is itself hostile
    make_image("in/plain.png", seed=1)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, [str(folder), "-m", "v2:1,1.2", "-q", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "summary.json").read_text())
    columns = list(rows[0])
    plain = next(r["output"] for r in rows if "plain" in r["output"])
    stats = json.loads((Path(plain) / "stats.json").read_text())
    (Path(plain) / "stats.json").write_text(json.dumps(_plant(stats, " ".join(ATTACKS))))
    for row in rows:
        if row["output"] == plain:
            row.update({c: ATTACKS[i % len(ATTACKS)] for i, c in enumerate(columns) if c not in ("output",)})
    rows.append({"image": ATTACKS[0], "status": "failed", "error": ATTACKS[1], "output": None})
    folders = dict.fromkeys(r["output"] for r in rows if r["output"])
    images = [(f, json.loads((Path(f) / "stats.json").read_text())) for f in folders]
    page_path = out / "report.html"
    links = output_links(out, rows)
    page_path.write_text(build_report(rows, report_cards(out, images), columns, [], output_links=links))
    text = page_path.read_text()
    assert "<script>window.__pwned" not in text and "<img src=x" not in text and "<b onmouseover" not in text
    pg = _open(browser, page_path)
    _fill_and_load_some(pg)
    for link in pg.query_selector_all("a"):
        link.hover()
    for select in pg.query_selector_all('select[aria-label="selection"]'):  # the cards' (not the explorers')
        select.select_option("1")
    pg.mouse.move(5, 5)
    assert pg.evaluate("window.__pwned") is None
    shown = pg.inner_text("body")
    assert ATTACKS[0] in shown and ATTACKS[1] in shown  # shown as text
    assert named.name in shown
    # planted links 404; the explorer refuses a planted method with its own message (text, not script)
    assert all(e.startswith(("failed: ", "aptviz: unknown method")) for e in pg.errors), pg.errors


def _fill_and_load_some(pg) -> None:
    pg.evaluate("document.querySelectorAll('.card[data-i]').forEach(c => window.APTVIZ.fill(c))")
    for handle in pg.query_selector_all("img"):
        handle.scroll_into_view_if_needed()
    pg.wait_for_timeout(300)


def test_a_backslash_in_a_file_name_keeps_the_images(tmp_path, make_image, browser):
    from typer.testing import CliRunner

    (tmp_path / "in").mkdir()
    make_image("in/back\\slash.png")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, [str(tmp_path / "in"), "-q", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    pg = _open(browser, out / "report.html")
    sizes = _fill_and_load(pg)
    assert len(sizes) >= 6 and all(w > 0 for _, w in sizes), sizes
    assert any("%5C" in s for s, _ in sizes)
    assert pg.errors == []


def test_odd_json_types_in_stats_do_not_stop_the_report():
    """Lists where text belongs, text where numbers belong: the page is still built (nothing raised)."""
    from aptviz.render.report import build_report

    stats = {"image": {"path": ["a", "b"], "original_size": "x", "resized_size": [0, -1]},
             "selections": [{"method": {"x": 1}, "alpha": [1], "files": "nope"}, "not a dict"],
             "files": {"heatmaps": ["a"], "blend": 3}, "importance": {"14": {"min": "a", "max": None}}}  # fmt: skip
    page = build_report([{"image": ["x"], "status": "ok"}], [("f", stats)], ["image", "status"])
    assert page.count('class="card"') == 1


def test_explorer_load_rejects_when_the_data_file_is_missing(tmp_path, browser):
    """aptviz.load(name) settles (rejects) when the card's explorer.js cannot be loaded; it used to hang."""
    from typer.testing import CliRunner

    from aptviz.cli.command import app

    src = tmp_path / "in"
    src.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(ROOT / "sample_images" / name, src / name)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, [str(src), "-m", "budget:0.3", "-q", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    (out / "coffee" / "explorer.js").unlink()
    settle = """n => Promise.race([
        window.aptviz.load(n).then(() => 'loaded', e => 'rejected: ' + e.message),
        new Promise(r => setTimeout(() => r('pending'), 3000))])"""
    pg = browser.new_page()
    pg.goto((out / "report.html").as_uri(), wait_until="load")
    assert pg.evaluate(settle, "chelsea") == "loaded"
    got = pg.evaluate(settle, "coffee")
    pg.close()
    assert got.startswith("rejected: ") and "explorer.js" in got, got
