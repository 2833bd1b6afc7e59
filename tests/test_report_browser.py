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
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("report")
    args = [str(ROOT / "sample_images"), "-m", "v2:1,1.2", "-m", "budget:0.3", "-q", "-o", str(out)]
    r = CliRunner().invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out / "report.html"


@pytest.fixture(scope="module")
def page(report):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
        pg.goto(report.as_uri(), wait_until="load")
        pg.errors = errors
        yield pg
        browser.close()


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
    assert card.query_selector('img[data-k="model_view"]').get_attribute("src").endswith("model_view_budget_alpha0.3.jpg")


def test_table_sorts_by_any_column(page):
    headers = page.eval_on_selector_all("table.sum th", "ths => ths.map(t => t.textContent)")
    col = headers.index("retention")

    def column():
        return page.eval_on_selector_all(
            f"table.sum tbody tr td:nth-child({col + 1})", "tds => tds.map(t => parseFloat(t.getAttribute('data-v')))"
        )

    page.click(f"table.sum th:nth-child({col + 1})")
    assert column() == sorted(column())
    page.click(f"table.sum th:nth-child({col + 1})")
    assert column() == sorted(column(), reverse=True)
    img_col = headers.index("image")
    page.click(f"table.sum th:nth-child({img_col + 1})")
    names = page.eval_on_selector_all(f"table.sum tbody tr td:nth-child({img_col + 1})", "t => t.map(x => x.textContent)")
    assert names == sorted(names)
