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


@pytest.fixture
def moved(report, tmp_path_factory):
    """The whole output folder moved elsewhere (as a zip would be unpacked); put back after the test (the
    batch is the session's, conftest)."""
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


# ---------------------------------------------------------------- SPEC §17: the table, titles and explorers


@pytest.fixture(scope="module")
def report17(report):
    """The session's one batch report (conftest): ``moved`` puts it back after each test."""
    return report


@pytest.fixture(scope="module")
def page17(report17, browser):
    pg = _open(browser, report17)
    yield pg
    assert pg.errors == []
    pg.context.close()


FIDELITY = ("llm_tokens", "llm_retention", "psnr_apt", "ssim_apt", "uniform_vit_tokens", "psnr_uniform",
            "ssim_uniform", "llm_uniform_tokens", "psnr_uniform_llm", "ssim_uniform_llm")  # fmt: skip


def test_table_shows_file_names_one_vit_column_and_every_fidelity_column_at_1400_px(page17, report17):
    import json

    page17.set_viewport_size({"width": 1400, "height": 900})
    page17.evaluate("window.scrollTo(0, 0)")
    names = page17.eval_on_selector_all("table.sum th", "ths => ths.map(t => t.getAttribute('title'))")
    labels = page17.eval_on_selector_all("table.sum th", "ths => ths.map(t => t.textContent)")
    assert "vit_tokens" not in names and sum("ViT tokens" == label for label in labels) == 1  # no duplicate
    for name in ("ssim_apt", "ssim_uniform", "ssim_uniform_llm"):  # SSIM headers in words
        label = labels[names.index(name)]
        assert label.startswith("SSIM of ") and "_" not in label, label
    assert "ViT" in labels[names.index("ssim_uniform")] and "LLM" in labels[names.index("ssim_uniform_llm")]
    rights = page17.eval_on_selector_all("table.sum th", "ths => ths.map(t => t.getBoundingClientRect().right)")
    for name in FIDELITY:
        assert rights[names.index(name)] <= 1400, (name, rights[names.index(name)])
    # the image column: the file name, its path on hover
    rows = json.loads((report17.parent / "summary.json").read_text())
    col = names.index("image")
    cells = page17.eval_on_selector_all(f"table.sum tbody tr td:nth-child({col + 1}) a",
                                      "as => as.map(a => [a.textContent, a.title])")  # fmt: skip
    assert sorted(cells) == sorted([Path(r["image"]).name, r["image"]] for r in rows)
    # the baseline at equal LLM tokens, as the summary has it
    col = names.index("psnr_uniform_llm")
    shown = page17.eval_on_selector_all(f"table.sum tbody tr td:nth-child({col + 1})", "t => t.map(x => x.textContent)")
    want = ["lossless" if r["psnr_uniform_llm"] is None else float(f"{r['psnr_uniform_llm']:.4g}") for r in rows]
    assert sorted(map(str, want)) == sorted(v if v == "lossless" else str(float(v)) for v in shown)


def _line_breaks(pg, selector: str) -> list[list[str]]:
    """``[character before, character after]`` at every line break inside the element (its rendered lines)."""
    return pg.eval_on_selector(selector, """h => {
        const out = []; const walk = document.createTreeWalker(h, NodeFilter.SHOW_TEXT);
        let top = null, prev = '', n;
        while ((n = walk.nextNode())) for (let i = 0; i < n.length; i++) {
          const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
          const rects = r.getClientRects();
          if (rects.length && rects[0].width > 0) {
            const t = Math.round(rects[0].top);
            if (top !== null && t > top + 2) out.push([prev, n.data[i]]);
            top = t;
          }
          prev = n.data[i];
        }
        return out; }""")


def test_card_titles_wrap_after_a_slash_or_a_space_on_a_phone(tmp_path, browser, monkeypatch):
    from typer.testing import CliRunner

    deep = Path("photos_from_the_field_trip_2026") / "camera_one_morning_session"
    (tmp_path / deep).mkdir(parents=True)
    shutil.copy(ROOT / "sample_images" / "chelsea.png", tmp_path / deep / "a_cat_looking_at_the_camera_closely.png")
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # the title is the path as given: relative, so pytest's own folder names stay out
    r = CliRunner().invoke(app, [str(deep / "a_cat_looking_at_the_camera_closely.png"), "-m", "v2", "-q", "-o",
                                 str(out)], catch_exceptions=False)  # fmt: skip
    assert r.exit_code == 0, r.output
    pg = _open(browser, out / "report.html", **PHONE)
    breaks = _line_breaks(pg, ".card h3")
    assert len(breaks) >= 3, breaks  # a long title does wrap on a phone
    assert all(before in "/ " for before, _ in breaks), breaks  # never inside a name or a size
    assert pg.eval_on_selector(".card h3", "h => h.scrollWidth <= h.clientWidth")
    pg.screenshot(path=str(out / "title_phone.png"))
    pg.context.close()


def test_dataset_explorer_shows_numbers_before_it_is_touched_and_its_strip_has_an_axis(page17, report17):
    import json
    from statistics import fmean, median

    el = page17.query_selector("[data-aptviz-dataset]")
    el.scroll_into_view_if_needed()
    page17.wait_for_selector('[data-aptviz-dataset] [data-field="mean_retention"]')
    rows = [r for r in json.loads((report17.parent / "summary.json").read_text())
            if (r["method"], r["alpha"]) == ("v2", 1.0)]  # the first v2 / budget selection of every image
    ret, llm = [r["retention"] for r in rows], [r["llm_retention"] for r in rows]

    def fields():
        return el.eval_on_selector_all("[data-field]", "fs => Object.fromEntries(fs.map(f => [f.dataset.field, "
                                                       "f.textContent]))")  # fmt: skip

    before = fields()
    assert before == {"images": "3", "mean_retention": f"{fmean(ret):.4f}", "median_retention": f"{median(ret):.4f}",
                      "mean_llm_retention": f"{fmean(llm):.4f}", "median_llm_retention": f"{median(llm):.4f}"}
    assert el.eval_on_selector("input[type=number]", "b => b.value") == "1"
    # the strip: tick labels and an axis line left of the bars (dark pixels in its left margin)
    pixels = el.eval_on_selector("canvas.apx-strip", """c => { const d = c.getContext('2d')
        .getImageData(0, 0, 30, c.height).data; let dark = 0; for (let i = 0; i < d.length; i += 4)
        if (d[i] < 120 && d[i + 1] < 120 && d[i + 2] < 120) dark++; return dark; }""")
    assert pixels > 20
    assert "axis 0 to 1" in el.inner_text()
    # touched: the images' data loads and the page's own numbers agree with the ones shown before
    el.dispatch_event("pointerdown")
    page17.wait_for_function("el => !el.querySelector('[data-field=images]').textContent.includes('of')", arg=el)
    page17.wait_for_timeout(200)
    assert fields() == before


def test_explorer_shows_both_baselines_as_the_stats(page17, report17):
    import json

    card = page17.query_selector(".card")
    ex = card.query_selector("[data-aptviz-explorer]")
    ex.scroll_into_view_if_needed()
    page17.wait_for_selector('.card [data-aptviz-explorer] [data-field="psnr_uniform_llm"]')
    stats = json.loads((report17.parent / "astronaut" / "stats.json").read_text())
    first = stats["selections"][0]
    got = ex.eval_on_selector_all("[data-field]", "fs => Object.fromEntries(fs.map(f => [f.dataset.field, "
                                                  "f.textContent]))")  # fmt: skip
    assert got["llm_uniform_tokens"] == str(first["llm_uniform_tokens"])
    assert got["psnr_uniform_llm"] == f"{first['psnr_uniform_llm']:.2f} dB"
    assert got["uniform_vit_tokens"] == str(first["uniform_vit_tokens"])


def test_v1_alpha_box_and_slider_agree(tmp_path, browser):
    """An explorer that starts in v1 (no alpha) shows no alpha in either control; v2 shows the same in both."""
    from typer.testing import CliRunner

    out = tmp_path / "out"
    r = CliRunner().invoke(app, [str(ROOT / "sample_images" / "chelsea.png"), "-m", "v1", "-m", "v2:1.2", "-q", "-o",
                                 str(out)], catch_exceptions=False)  # fmt: skip
    assert r.exit_code == 0, r.output
    pg = _open(browser, out / "report.html")
    ex = pg.query_selector(".card [data-aptviz-explorer]")
    ex.scroll_into_view_if_needed()
    pg.wait_for_selector(".card [data-aptviz-explorer] select[name=method]")

    def controls():
        return ex.evaluate("""e => { const r = e.querySelector('input[type=range][name=alpha]'),
            b = e.querySelector('input[type=number][name=alpha]');
            return {method: e.querySelector('select[name=method]').value,
                    range: getComputedStyle(r).visibility === 'hidden' ? null : r.value, box: b.value || null,
                    disabled: [r.disabled, b.disabled]}; }""")

    assert controls() == {"method": "v1", "range": None, "box": None, "disabled": [True, True]}
    ex.query_selector("select[name=method]").select_option("v2")
    shown = controls()
    assert shown["range"] == shown["box"] is not None and shown["disabled"] == [False, False]
    ex.query_selector("select[name=method]").select_option("v1")
    assert controls() == {"method": "v1", "range": None, "box": None, "disabled": [True, True]}
    assert pg.errors == []
    pg.context.close()


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
