"""The explorer: the page's selection equals aptviz.select_patches, in a real headless Chromium.

Python side: the explorer's data (maps, means, budget order, per-cell model-view
errors, uniform table) against the pipeline. Browser side: window.aptviz.select
on the sample photos for many alphas (random, every v2 breakpoint of one scale,
budget 0 and 1), v1 custom thresholds; the controls driven through the DOM; the
dataset view; the `aptviz explore` page and `_repr_html_()` offline.
Browser tests are skipped, with the reason, only when Playwright or Chromium is missing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aptviz
from aptviz.compute.entropy import PAD
from aptviz.compute.params import Params
from aptviz.compute.tokens import token_counts
from aptviz.compute.views import compare_views, model_view, psnr
from aptviz.pipeline import compute
from aptviz.compute.explorer_data import _cell_stats, cell_errors, explorer_data
from aptviz.render.explorer import explorer_script
from aptviz.runs.explore import explore

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_images").glob("*.png"))
CHROMIUM = os.environ.get("APTVIZ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _result(path: Path, **params):
    return compute(path, [], Params(**params))


def _decode(b64: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.dtype(dtype).newbyteorder("<"))


# ---- Python: the data --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_per_cell_errors_give_the_model_view_psnr(path):
    res = _result(path)
    scales = sorted(res.maps)
    grids = {ps: res.maps[ps].shape for ps in scales}
    err = cell_errors(res.resized, 14, scales, grids)
    rng = np.random.default_rng(0)
    for method, alpha in [("v2", 1.0), ("v2", 0.7), ("budget", 0.3), ("budget", 0.05), ("v1", None)]:
        sel = aptviz.select_patches(res.maps, method, alpha if alpha is not None else 1.0)
        total = sum(float(err[ps][np.asarray(sel.masks[ps])].sum()) for ps in scales)
        expected = psnr(res.resized, model_view(res.resized, sel.masks))
        got = None if total == 0 else 10 * np.log10(255.0**2 / (total / res.resized.size))
        assert (got is None) == (expected is None)
        assert got == pytest.approx(expected, abs=1e-9)
    # a random partition-free check: a kept coarse cell's error is its block's squared deviation
    ps = scales[1]
    r, c = rng.integers(0, res.resized.shape[0] // ps), rng.integers(0, res.resized.shape[1] // ps)
    block = res.resized[r * ps:(r + 1) * ps, c * ps:(c + 1) * ps].astype(np.int64)
    means = np.rint(block.reshape(14, 2, 14, 2, 3).sum(axis=(1, 3)) / 4.0)
    assert err[ps][r, c] == ((block - np.repeat(np.repeat(means, 2, 0), 2, 1)) ** 2).sum()


def _reference_cell_errors(img: np.ndarray, ps: int, patch: int) -> np.ndarray:
    """Per whole ps px cell: the squared error of its model view, pixel by pixel (int64)."""
    r, rows, cols = ps // patch, img.shape[0] // ps, img.shape[1] // ps
    cells = img[: rows * ps, : cols * ps].astype(np.int64).reshape(rows, ps, cols, ps, 3)
    means = np.rint(cells.reshape(rows, patch, r, cols, patch, r, 3).sum(axis=(2, 5)) / float(r * r))
    view = np.repeat(np.repeat(means, r, axis=1), r, axis=3).reshape(cells.shape)
    return ((cells - view) ** 2).sum(axis=(1, 3, 4))


@settings(max_examples=60, deadline=None)
@given(st.integers(28, 300), st.integers(28, 300), st.integers(2, 4), st.integers(0, 10**6), st.booleans())
def test_per_cell_errors_match_the_pixel_by_pixel_sum(h, w, scales, seed, flat):
    """Any size (cells that overhang get 0), 2-4 scales, noise or a flat picture: the block-sum formula gives
    each cell's error exactly, and the same sums each cell's mean colour."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if flat:
        img[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    sizes = [14 << k for k in range(scales)]
    grids = {ps: (-(-h // ps), -(-w // ps)) for ps in sizes}
    err = cell_errors(img, 14, sizes, grids)
    same, colours = _cell_stats(img, 14, sizes, grids)
    assert not err[14].any() and sorted(colours) == sizes[1:]
    for ps in sizes[1:]:
        assert err[ps].dtype == np.float64 and err[ps].shape == grids[ps]
        expected = np.zeros(grids[ps])
        rows, cols = h // ps, w // ps
        expected[:rows, :cols] = _reference_cell_errors(img, ps, 14)
        assert np.array_equal(err[ps], expected) and np.array_equal(same[ps], expected)
        # the explorer's flat blocks: each whole cell's mean colour, rounded half to even
        mean = np.zeros((*grids[ps], 3), np.uint8)
        cells = img[: rows * ps, : cols * ps].astype(np.int64).reshape(rows, ps, cols, ps, 3).sum(axis=(1, 3))
        mean[:rows, :cols] = np.rint(cells / float(ps * ps))
        assert colours[ps].dtype == np.uint8 and np.array_equal(colours[ps], mean)


def test_data_carries_the_maps_means_and_uniform_table():
    path = ROOT / "sample_images" / "chelsea.png"
    res = _result(path)
    data = explorer_data("chelsea", res.loaded.image, res.resized, res.maps, res.params)
    for ps, m in res.maps.items():
        assert np.array_equal(_decode(data["maps"][str(ps)], "f4").reshape(m.shape), m)
    for ps in sorted(res.maps)[1:]:
        m = res.maps[ps]
        assert data["means"][str(ps)] == float(m[m != PAD].astype(np.float64).sum()) / int((m != PAD).sum())
    # every token count in range maps to the uniform baseline compare_views computes
    table = data["uniform"]
    n = res.maps[14].size
    for t in sorted({table[0][0], n, *np.random.default_rng(1).integers(table[0][0], n, 6).tolist()}):
        entry = [e for e in table if e[0] <= t][-1]
        masks = aptviz.select_patches(res.maps, "budget", 1.0).masks  # any partition: the uniform side ignores it
        view = compare_views(res.loaded.image, res.resized, masks, t, with_ssim=False).stats
        assert entry[1] == view.uniform_vit_tokens
        assert entry[2] == pytest.approx(view.psnr_uniform, abs=1e-5)


def test_data_carries_the_uniform_table_at_equal_llm_tokens():
    """Every LLM token count maps to the baseline at equal LLM tokens compare_views computes (max_pixels = l * 28**2)."""
    path = ROOT / "sample_images" / "coffee.png"
    res = _result(path)
    data = explorer_data("coffee", res.loaded.image, res.resized, res.maps, res.params)
    table = data["uniform_llm"]
    n_llm = res.maps[14].size // 4
    assert table[0][0] == 1 and [e[0] for e in table] == sorted({e[0] for e in table})
    masks = aptviz.select_patches(res.maps, "budget", 1.0).masks  # any partition: the uniform side ignores it
    for t in sorted({1, n_llm, *np.random.default_rng(2).integers(1, n_llm, 6).tolist()}):
        entry = [e for e in table if e[0] <= t][-1]
        view = compare_views(res.loaded.image, res.resized, masks, 4 * t, with_ssim=False, llm_tokens=t).stats
        assert entry[1] == view.llm_uniform_tokens <= t
        assert entry[2] == pytest.approx(view.psnr_uniform_llm, abs=1e-5)


def test_explore_api_names_and_page(tmp_path):
    ex = explore([ROOT / "sample_images" / "chelsea.png", ROOT / "sample_images" / "chelsea.png"], bins=256)
    assert ex.names == ["chelsea", "chelsea_2"]
    out = ex.save(tmp_path / "e.html")
    page = out.read_text(encoding="utf-8")
    assert page.count("<div data-aptviz-explorer") == 2 and "<div data-aptviz-dataset" in page
    assert "http://" not in page and "https://" not in page


# ---- the browser ---------------------------------------------------------------------------------------------

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser(chromium):
    """The session's one Chromium (conftest)."""
    return chromium


def _open(browser, url):
    pg = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: errors.append(f"network: {r.url}") if r.url.startswith(("http:", "https:")) else None)
    pg.goto(url, wait_until="load")
    pg.errors = errors
    return pg


CASES = {
    # name: (image, params)
    "astronaut": ("astronaut.png", {}),
    "chelsea": ("chelsea.png", {}),  # 448x308: the 56 px grid overhangs at the bottom (PAD row)
    "coffee": ("coffee.png", {}),
    "chelsea_mse": ("chelsea.png", {"importance": "upsample-mse"}),  # budget scores by the cell's own value
    "coffee_lap": ("coffee.png", {"importance": "laplacian", "patch_size": 16}),
    "astronaut_4": ("astronaut.png", {"num_scales": 4}),  # 14..112 px; the 112 px grid overhangs
    "coffee_m1": ("coffee.png", {"merge_size": 1}),  # factor 14: the 28 px grid overhangs too; LLM = ViT tokens
    "chelsea_m4": ("chelsea.png", {"merge_size": 4}),  # 56 px units: small patches may not fill whole units
    "coffee_q3": ("coffee.png", {"model": "qwen3-vl"}),  # 16, 32, 64 px; 32 px merge unit
}


@pytest.fixture(scope="module")
def results():
    return {name: _result(ROOT / "sample_images" / img, **params) for name, (img, params) in CASES.items()}


@pytest.fixture(scope="module")
def explore_page(tmp_path_factory, results):
    out = tmp_path_factory.mktemp("explore") / "explore.html"
    payloads = [explorer_data(n, r.loaded.image, r.resized, r.maps, r.params) for n, r in results.items()]
    from aptviz.render.explorer import explorer_page

    out.write_text(explorer_page(payloads), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def page(browser, explore_page):
    pg = _open(browser, explore_page.as_uri())
    yield pg
    assert not pg.errors, pg.errors
    pg.close()


def _js_select_many(pg, name, calls):
    return pg.evaluate(
        """([name, calls]) => calls.map(c => {
            const r = aptviz.select(name, c);
            const masks = {};
            for (const ps in r.masks) masks[ps] = r.masks[ps].join('');
            return Object.assign({}, r, {masks});
        })""",
        [name, calls],
    )


_VIEWS: dict = {}


def _views(res, masks, vit_tokens, llm_tokens):
    """compare_views' PSNR and token numbers (SSIM aside: the page shows none), once per distinct selection:
    many alphas select the same patches."""
    p = res.params
    key = (id(res), vit_tokens, llm_tokens, *(np.packbits(np.asarray(masks[ps])).tobytes() for ps in sorted(masks)))
    if key not in _VIEWS:
        _VIEWS[key] = (res, compare_views(res.loaded.image, res.resized, masks, vit_tokens, p.patch_size, p.merge_size,
                                          p.min_pixels, with_ssim=False, llm_tokens=llm_tokens).stats)
    return _VIEWS[key][1]


def _check(res, got, method, alpha=1.0, thresholds=None, with_views=True):
    p = res.params
    sel = aptviz.select_patches(res.maps, method, alpha, thresholds, measure=p.importance)
    for ps, m in sel.masks.items():
        flat = "".join("1" if v else "0" for v in np.asarray(m).reshape(-1))
        assert got["masks"][str(ps)] == flat, (method, alpha, thresholds, ps)
    assert got["tokens_by_scale"] == {str(k): v for k, v in sel.tokens_by_scale.items()}
    tc = token_counts(sel.tokens_by_scale, sel.base_small_tokens, p.patch_size, p.merge_size)
    assert got["vit_tokens"] == tc.vit_tokens and got["llm_tokens"] == tc.llm_tokens
    assert got["retention"] == sel.retention
    if method == "budget":
        assert got["budget_info"] == dict(sel.budget_info.to_dict() if hasattr(sel.budget_info, "to_dict")
                                          else sel.budget_info)
    else:
        assert got["thresholds"] == sel.thresholds
    if with_views:
        view = _views(res, sel.masks, sel.tokens, tc.llm_tokens)
        if view.psnr_apt is None:
            assert got["psnr_apt"] is None
        else:
            assert abs(got["psnr_apt"] - view.psnr_apt) < 0.01
        assert got["uniform_vit_tokens"] == view.uniform_vit_tokens
        assert got["psnr_uniform"] == pytest.approx(view.psnr_uniform, abs=1e-5)
        # the baseline at equal LLM tokens, from the data's table (computed in Python)
        assert got["llm_uniform_tokens"] == view.llm_uniform_tokens
        assert got["psnr_uniform_llm"] == pytest.approx(view.psnr_uniform_llm, abs=1e-5)


@needs_chromium
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.slow
def test_v2_random_alphas_and_every_breakpoint(page, results, name):
    res = results[name]
    m = res.maps[sorted(res.maps)[1]]
    valid = m[m != PAD].astype(np.float64)
    mean = float(valid.sum()) / valid.size
    breaks = sorted({float(v) / mean for v in valid})  # alpha exactly at cell / mean: float64 decides
    rng = np.random.default_rng(len(name))
    alphas = [0.0, 3.0, 1.0, *rng.uniform(0, 3, 25).tolist(), *breaks, *np.nextafter(breaks, 0).tolist()[:40]]
    got = _js_select_many(page, name, [{"method": "v2", "alpha": a} for a in alphas])
    for i, (a, g) in enumerate(zip(alphas, got)):
        _check(res, g, "v2", a, with_views=i < 30 or i % 10 == 0)


@needs_chromium
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.slow
def test_budget_alphas_including_0_and_1(page, results, name):
    res = results[name]
    n = res.maps[min(res.maps)].size
    rng = np.random.default_rng(7 + len(name))
    sel0 = aptviz.select_patches(res.maps, "budget", 0.0, measure=res.params.importance)
    base = sel0.budget_info.base_tokens
    # alpha * N exactly half-way, where round-half-to-even and round-half-up give different k
    halves = [(j + 0.5) / n for j in range(base, n) if j % 2 == 0 and (j + 1 - base) % 3 == 0]
    halves = [a for a in halves if a * n == int(a * n) + 0.5][:: max(1, len(halves) // 20)]
    assert halves
    alphas = [0.0, 1.0, 0.5, 0.3, *rng.uniform(0, 1, 30).tolist(), *halves]
    got = _js_select_many(page, name, [{"method": "budget", "alpha": a} for a in alphas])
    for i, (a, g) in enumerate(zip(alphas, got)):
        _check(res, g, "budget", a, with_views=i < 34 or i % 5 == 0)


@needs_chromium
@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee_lap", "astronaut_4", "coffee_m1"])
@pytest.mark.slow
def test_v1_custom_thresholds(page, results, name):
    res = results[name]
    scales = sorted(res.maps)
    rng = np.random.default_rng(3)
    hi = [float(res.maps[ps][res.maps[ps] != PAD].max()) for ps in scales[1:]]
    sets = [[float(rng.uniform(0, h * 1.1)) for h in hi] for _ in range(20)]
    # thresholds equal to cell values: `cell < threshold` is strict
    sets += [[float(res.maps[ps][res.maps[ps] != PAD].reshape(-1)[k]) for ps in scales[1:]] for k in range(5)]
    if res.params.importance == "entropy" and len(scales) == 3:
        sets.append([3.0, 2.0])
    got = _js_select_many(page, name, [{"method": "v1", "thresholds": t} for t in sets])
    for t, g in zip(sets, got):
        _check(res, g, "v1", 1.0, t)


@needs_chromium
def test_one_scale_keeps_every_patch(browser, tmp_path):
    """With one scale there is nothing to choose: every method keeps every finest patch, as in Python."""
    ex = explore(ROOT / "sample_images" / "chelsea.png", num_scales=1)
    pg = _open(browser, ex.save(tmp_path / "one.html").as_uri())
    res = _result(ROOT / "sample_images" / "chelsea.png", num_scales=1)
    calls = [{"method": "v2", "alpha": 1.0}, {"method": "budget", "alpha": 0.0}, {"method": "v1", "thresholds": []}]
    for call, got in zip(calls, _js_select_many(pg, "chelsea", calls)):
        _check(res, got, call["method"], call.get("alpha", 1.0), call.get("thresholds"))
    assert not pg.errors, pg.errors
    pg.close()


@needs_chromium
def test_controls_update_the_fields(page, results):
    res = results["astronaut"]
    el = "[data-aptviz-explorer][data-image='astronaut']"

    def fields():
        return page.evaluate(
            """(sel) => Object.fromEntries(Array.from(document.querySelector(sel).querySelectorAll('[data-field]'))
                 .map(e => [e.dataset.field, e.dataset.value]))""", el)

    def move(selector, value):
        page.evaluate("""([s, v]) => { const e = document.querySelector(s); e.value = v;
                          e.dispatchEvent(new Event('input', {bubbles: true})); }""", [selector, value])

    def expect(method, alpha=1.0, thresholds=None):
        sel = aptviz.select_patches(res.maps, method, alpha, thresholds)
        p = res.params
        view = compare_views(res.loaded.image, res.resized, sel.masks, sel.tokens, with_ssim=False).stats
        tc = token_counts(sel.tokens_by_scale, sel.base_small_tokens, p.patch_size, p.merge_size)
        f = fields()
        assert int(f["vit_tokens"]) == tc.vit_tokens and int(f["llm_tokens"]) == tc.llm_tokens
        assert float(f["retention"]) == sel.retention
        assert abs(float(f["psnr_apt"]) - view.psnr_apt) < 0.01
        assert int(f["uniform_vit_tokens"]) == view.uniform_vit_tokens
        assert float(f["psnr_uniform"]) == pytest.approx(view.psnr_uniform, abs=1e-5)
        for ps, n in sel.tokens_by_scale.items():
            assert int(f[f"tokens_{ps}"]) == n
        shown = page.locator(f"{el} [data-field=vit_tokens]").text_content()
        assert shown == str(tc.vit_tokens)

    move(f"{el} select[name=method]", "v2")
    move(f"{el} input[name=alpha]", "1.37")
    expect("v2", 1.37)
    move(f"{el} input[type=number][name=alpha]", "0.8")
    expect("v2", 0.8)
    assert page.eval_on_selector(f"{el} input[type=range][name=alpha]", "e => e.value") == "0.8"
    move(f"{el} select[name=method]", "budget")
    move(f"{el} input[name=alpha]", "0.25")
    expect("budget", 0.25)
    move(f"{el} select[name=method]", "v1")
    move(f"{el} input[name=threshold-1]", "4.5")
    move(f"{el} input[name=threshold-2]", "3.25")
    expect("v1", thresholds=[4.5, 3.25])


@needs_chromium
def test_dataset_mean_is_the_mean_of_the_images(page):
    ds = "[data-aptviz-dataset]"
    for method, alpha in [("v2", "1.2"), ("budget", "0.35"), ("v2", "0.6")]:
        page.evaluate("""([s, m, a]) => { const d = document.querySelector(s);
            const sel = d.querySelector('select[name=method]'); sel.value = m; sel.dispatchEvent(new Event('input'));
            const al = d.querySelector('input[name=alpha]'); al.value = a; al.dispatchEvent(new Event('input')); }""",
                      [ds, method, alpha])
        names = page.evaluate("Array.from(document.querySelectorAll('[data-aptviz-explorer]')).map(e => e.dataset.image)")
        rets = page.evaluate("([n, m, a]) => n.map(x => aptviz.select(x, {method: m, alpha: a}))",
                             [names, method, float(alpha)])
        got = page.evaluate("""(s) => Object.fromEntries(Array.from(document.querySelector(s)
                 .querySelectorAll('[data-field]')).map(e => [e.dataset.field, e.dataset.value]))""", ds)
        r = [x["retention"] for x in rets]
        lr = [x["llm_retention"] for x in rets]
        assert float(got["mean_retention"]) == pytest.approx(float(np.mean(r)), rel=1e-12, abs=0)
        assert float(got["median_retention"]) == pytest.approx(float(np.median(r)), rel=1e-12, abs=0)
        assert float(got["mean_llm_retention"]) == pytest.approx(float(np.mean(lr)), rel=1e-12, abs=0)


def _built(pg, count):
    pg.wait_for_function(
        f"document.querySelectorAll('[data-aptviz-explorer] [data-field=vit_tokens]').length >= {count}", timeout=10000
    )


@needs_chromium
def test_cli_explore_page_works_offline(browser, tmp_path):
    from aptviz.cli import main

    out = tmp_path / "explore.html"
    with pytest.raises(SystemExit) as exc:
        main(["explore", str(ROOT / "sample_images" / "chelsea.png"), str(ROOT / "sample_images" / "coffee.png"),
              "-o", str(out), "--bins", "256", "-m", "budget", "-a", "0.4", "--model", "qwen3-vl"])
    assert exc.value.code == 0
    pg = _open(browser, out.as_uri())
    _built(pg, 2)
    res = _result(ROOT / "sample_images" / "coffee.png", bins=256, model="qwen3-vl")
    sel = aptviz.select_patches(res.maps, "budget", 0.4)
    shown = pg.eval_on_selector("[data-image='coffee'] [data-field=vit_tokens]", "e => e.textContent")
    assert shown == str(sel.tokens)
    assert pg.eval_on_selector("[data-image='coffee'] select[name=method]", "e => e.value") == "budget"
    assert not pg.errors, pg.errors
    pg.close()


@needs_chromium
def test_repr_html_twice_on_one_page(browser, tmp_path):
    a = explore(ROOT / "sample_images" / "chelsea.png", method="v2", alpha=1.2)
    b = explore(ROOT / "sample_images" / "coffee.png", method="budget", alpha=0.2)
    # a notebook's exported HTML: the cells' outputs one after the other, each with its own copy of the script
    page = tmp_path / "notebook.html"
    page.write_text(f"<!DOCTYPE html><html><body><div>{a._repr_html_()}</div><div>{b._repr_html_()}</div></body></html>",
                    encoding="utf-8")
    pg = _open(browser, page.as_uri())
    _built(pg, 2)
    got = pg.evaluate("aptviz.select('coffee', {method: 'budget', alpha: 0.2}).vit_tokens")
    res = _result(ROOT / "sample_images" / "coffee.png")
    assert got == aptviz.select_patches(res.maps, "budget", 0.2).tokens
    assert pg.eval_on_selector("[data-image='chelsea'] input[type=number][name=alpha]", "e => e.value") == "1.2"
    assert pg.evaluate("document.querySelectorAll('[data-image=chelsea] select[name=method]').length") == 1
    assert not pg.errors, pg.errors
    pg.close()


def test_data_is_json_and_safe_in_a_script():
    from aptviz.render.explorer import _json_for_script

    text = _json_for_script({"name": "</script><b>"})
    assert "</" not in text and json.loads(text) == {"name": "</script><b>"}


# ---- report.html ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch(sample_batch):
    """The session's one batch over sample_images (conftest)."""
    return sample_batch


@pytest.mark.slow
def test_batch_explorer_files_compute_a_few_uniform_baselines_exactly(batch):
    from aptviz.compute.explorer_data import BATCH_UNIFORM_VIEWS

    for path in SAMPLES:
        text = (batch / path.stem / "explorer.js").read_text(encoding="utf-8")
        data = json.loads(text[text.index("push(") + 5: text.rindex(");")])
        stats = json.loads((batch / path.stem / "stats.json").read_text(encoding="utf-8"))
        assert stats["files"]["explorer"] == "explorer.js"
        table = data["uniform"]
        computed = [e for e in table if len(e) == 3]
        assert len(computed) <= BATCH_UNIFORM_VIEWS + len(stats["selections"]) and len(computed) < len(table)
        res = _result(path)
        masks = aptviz.select_patches(res.maps, "budget", 1.0).masks
        for t, uvt, value in computed:
            view = compare_views(res.loaded.image, res.resized, masks, t, with_ssim=False).stats
            assert uvt == view.uniform_vit_tokens
            assert value == (None if view.psnr_uniform is None else round(view.psnr_uniform, 6))
        for sel in stats["selections"]:  # the batch's own selections are always in the table
            entry = [e for e in table if e[0] <= sel["vit_tokens"]][-1]
            assert entry[1] == sel["uniform_vit_tokens"] and len(entry) == 3
            entry = [e for e in data["uniform_llm"] if e[0] <= sel["llm_tokens"]][-1]  # and at equal LLM tokens
            assert entry[1:] == [sel["llm_uniform_tokens"], round(sel["psnr_uniform_llm"], 6)]


@needs_chromium
@pytest.mark.slow
def test_report_cards_load_their_explorer_when_shown(browser, batch):
    pg = browser.new_page(viewport={"width": 1000, "height": 500})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.goto((batch / "report.html").as_uri(), wait_until="load")
    names = pg.evaluate("Array.from(document.querySelectorAll('[data-aptviz-explorer]')).map(e => e.dataset.image)")
    assert sorted(names) == sorted(p.stem for p in SAMPLES)
    last = names[-1]
    pg.wait_for_timeout(300)
    assert pg.evaluate("(n) => !document.querySelector(`[data-image='${n}'] [data-field=vit_tokens]`)", last)  # lazy
    built = f"[data-aptviz-explorer][data-image='{last}'] [data-field=vit_tokens]"
    for _ in range(10):  # cards above may grow as their explorers start: scroll again until it is in view
        pg.locator(f"[data-aptviz-explorer][data-image='{last}']").scroll_into_view_if_needed()
        pg.wait_for_timeout(400)
        if pg.query_selector(built):
            break
    assert pg.query_selector(built), "the card's explorer did not start when shown"
    stats = json.loads((batch / last / "stats.json").read_text(encoding="utf-8"))
    first = stats["selections"][0]  # the card's explorer starts at the card's first selection
    shown = pg.evaluate("""(n) => Object.fromEntries(Array.from(document.querySelectorAll(
        `[data-image='${n}'] [data-field]`)).map(e => [e.dataset.field, e.dataset.value]))""", last)
    assert int(shown["vit_tokens"]) == first["vit_tokens"] and int(shown["llm_tokens"]) == first["llm_tokens"]
    assert float(shown["retention"]) == first["retention"]
    assert abs(float(shown["psnr_apt"]) - first["psnr_apt"]) < 0.01
    assert int(shown["uniform_vit_tokens"]) == first["uniform_vit_tokens"]
    assert float(shown["psnr_uniform"]) == pytest.approx(first["psnr_uniform"], abs=1e-5)
    # every card, loaded through the API, selects as Python does
    res = {p.stem: _result(p) for p in SAMPLES}
    for name in names:
        pg.evaluate("(n) => aptviz.load(n)", name)
        for method, alpha in [("v2", 0.9), ("budget", 0.45), ("budget", 1.0)]:
            got = _js_select_many(pg, name, [{"method": method, "alpha": alpha}])[0]
            _check(res[name], got, method, alpha, with_views=False)
    assert not errors, errors
    pg.close()


@needs_chromium
def test_report_dataset_view_loads_every_image_and_averages(browser, batch):
    pg = browser.new_page(viewport={"width": 1000, "height": 700})
    pg.goto((batch / "report.html").as_uri(), wait_until="load")
    ds = "[data-aptviz-dataset]"
    pg.evaluate("""(s) => { const a = document.querySelector(s + ' input[name=alpha]'); a.value = '1.5';
                            a.dispatchEvent(new Event('input')); }""", ds)
    pg.wait_for_function("(s) => document.querySelector(s + ' [data-field=images]').dataset.value === '3'", arg=ds,
                         timeout=10000)
    got = float(pg.eval_on_selector(f"{ds} [data-field=mean_retention]", "e => e.dataset.value"))
    res = [_result(p) for p in SAMPLES]
    expected = np.mean([aptviz.select_patches(r.maps, "v2", 1.5).retention for r in res])
    assert got == pytest.approx(expected, rel=1e-12)
    pg.close()


# ---- hardening: the page refuses and reports as Python does; any image name works ---------------------------


@pytest.fixture(scope="module")
def odd_page(browser, tmp_path_factory):
    """Merge sizes whose units the scales do not nest in, next to the default, on one page."""
    from aptviz.render.explorer import explorer_page

    cases = {"m3s2": {"merge_size": 3, "num_scales": 2}, "m3": {"merge_size": 3}, "plain": {}}
    res = {name: _result(ROOT / "sample_images" / "chelsea.png", **p) for name, p in cases.items()}
    out = tmp_path_factory.mktemp("odd") / "odd.html"
    out.write_text(explorer_page([explorer_data(n, r.loaded.image, r.resized, r.maps, r.params)
                                  for n, r in res.items()]), encoding="utf-8")
    pg = _open(browser, out.as_uri())
    yield pg, res
    pg.close()


@needs_chromium
@pytest.mark.parametrize("name", ["m3s2", "m3", "plain"])
def test_llm_tokens_are_null_where_python_gives_null(odd_page, name):
    pg, results = odd_page
    res = results[name]
    p = res.params
    calls = [{"method": "v2", "alpha": a} for a in (0.0, 0.5, 1.0, 2.0, 3.0, 100.0)]
    calls += [{"method": "budget", "alpha": a} for a in (0.0, 0.3, 1.0)]
    got = _js_select_many(pg, name, calls)
    for call, g in zip(calls, got):
        sel = aptviz.select_patches(res.maps, call["method"], call["alpha"], measure=p.importance)
        tc = token_counts(sel.tokens_by_scale, sel.base_small_tokens, p.patch_size, p.merge_size)
        assert (g["vit_tokens"], g["llm_tokens"], g["llm_tokens_uniform"], g["llm_retention"]) == (
            tc.vit_tokens, tc.llm_tokens, tc.llm_tokens_uniform, tc.llm_retention), (name, call)
        if name != "plain":
            assert g["llm_tokens"] is None
    if name == "m3s2":  # the numbers shown: a dash, not a count
        sel = "[data-image=m3s2] [data-field=llm_tokens]"
        pg.wait_for_selector(sel)
        assert pg.eval_on_selector(sel, "e => e.dataset.value") == ""
        assert pg.eval_on_selector("[data-image=m3s2] [data-field=llm_retention]", "e => e.dataset.value") == ""
    assert not pg.errors, pg.errors


BAD_CALLS = [  # (JavaScript options, select_patches arguments): both refuse
    ("{method: 'v2', alpha: NaN}", ("v2", float("nan"))),
    ("{method: 'v2', alpha: Infinity}", ("v2", float("inf"))),
    ("{method: 'v2', alpha: -0.5}", ("v2", -0.5)),
    ("{method: 'budget', alpha: 1e300}", ("budget", 1e300)),
    ("{method: 'budget', alpha: -1e-9}", ("budget", -1e-9)),
    ("{method: 'budget', alpha: 1.0000001}", ("budget", 1.0000001)),
    ("{method: 'v2', alpha: 'abc'}", ("v2", "abc")),
    ("{method: 'v1', thresholds: [3]}", ("v1", 1.0, [3])),
    ("{method: 'v1', thresholds: [3, 2, 1]}", ("v1", 1.0, [3, 2, 1])),
    ("{method: 'v1', thresholds: [3, NaN]}", ("v1", 1.0, [3, float("nan")])),
    ("{method: 'v1', thresholds: ['a', 2]}", ("v1", 1.0, ["a", 2])),
    ("{method: 'v1', thresholds: [3, Infinity]}", ("v1", 1.0, [3, float("inf")])),
    ("{method: 'v3', alpha: 1}", ("v3", 1.0)),
]


@needs_chromium
def test_select_refuses_what_python_refuses(odd_page):
    pg, results = odd_page
    res = results["plain"]
    for js, args in BAD_CALLS:
        with pytest.raises(ValueError):
            aptviz.select_patches(res.maps, *args)
        err = pg.evaluate(f"() => {{ try {{ aptviz.select('plain', {js}); return null; }} "
                          "catch (e) { return [e.name, e.message]; } }")
        assert err is not None and err[0] == "ValueError" and err[1], (js, err)
    # still accepted, as in Python: any v2 alpha >= 0, a method in any case, budget's ends, v1's defaults
    for js, args in [("{method: 'V2', alpha: 1e300}", ("v2", 1e300)), ("{method: 'budget', alpha: 1}", ("budget", 1.0)),
                     ("{method: 'v1'}", ("v1",)), ("{method: ' budget ', alpha: 0}", ("budget", 0.0)),
                     ("{method: 'v1', thresholds: new Float64Array([2.5, 1.5])}", ("v1", 1.0, [2.5, 1.5]))]:
        got = pg.evaluate(f"() => aptviz.select('plain', {js}).vit_tokens")
        assert got == aptviz.select_patches(res.maps, *args).tokens, js
    assert not pg.errors, pg.errors


PROTO_NAMES = ["constructor", "toString", "__proto__", "hasOwnProperty"]


@needs_chromium
def test_images_named_like_object_properties_work_on_the_explore_page(browser, tmp_path):
    from aptviz.cli.explore import app
    from typer.testing import CliRunner

    from conftest import small_images

    folder = small_images(tmp_path / "imgs", len(PROTO_NAMES))
    for i, name in enumerate(PROTO_NAMES):
        (folder / f"img{i:02d}.png").rename(folder / f"{name}.png")
    out = tmp_path / "explore.html"
    r = CliRunner().invoke(app, [str(folder), "-o", str(out), "--bins", "64", "-q"])
    assert r.exit_code == 0, r.output
    pg = _open(browser, out.as_uri())
    _built(pg, len(PROTO_NAMES))
    for name in PROTO_NAMES:
        assert pg.evaluate("(n) => aptviz.select(n, {method: 'v2', alpha: 1}).vit_tokens", name) > 0
    ds = "[data-aptviz-dataset]"
    pg.evaluate("""(s) => { const a = document.querySelector(s + ' input[type=range][name=alpha]'); a.value = '0.5';
                            a.dispatchEvent(new Event('input')); }""", ds)
    assert pg.eval_on_selector(f"{ds} [data-field=images]", "e => e.dataset.value") == str(len(PROTO_NAMES))
    assert float(pg.eval_on_selector(f"{ds} [data-field=mean_retention]", "e => e.dataset.value")) > 0
    assert not pg.errors, pg.errors
    pg.close()


@needs_chromium
def test_images_named_like_object_properties_work_in_the_report(browser, tmp_path):
    from typer.testing import CliRunner

    from aptviz.cli import app
    from conftest import small_images

    folder = small_images(tmp_path / "imgs", len(PROTO_NAMES))
    for i, name in enumerate(PROTO_NAMES):
        (folder / f"img{i:02d}.png").rename(folder / f"{name}.png")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, [str(folder), "-o", str(out), "-q", "--bins", "64"])
    assert r.exit_code == 0, r.output
    pg = _open(browser, (out / "report.html").as_uri())
    for name in PROTO_NAMES:  # every card's explorer loads its data file and starts
        pg.locator(f"[data-aptviz-explorer][data-image='{name}']").scroll_into_view_if_needed()
        pg.wait_for_selector(f"[data-aptviz-explorer][data-image='{name}'] [data-field=vit_tokens]", timeout=10000)
    ds = "[data-aptviz-dataset]"
    pg.evaluate("""(s) => { const a = document.querySelector(s + ' input[type=range][name=alpha]'); a.value = '0.5';
                            a.dispatchEvent(new Event('input')); }""", ds)
    pg.wait_for_function("(s) => document.querySelector(s + ' [data-field=images]').dataset.value === '4'", arg=ds,
                         timeout=10000)
    assert not pg.errors, pg.errors
    pg.close()


# ---- report.html runs only the explorer data aptviz wrote, from the image folder --------------------------------


def _small_batch(tmp_path):
    from typer.testing import CliRunner

    from aptviz.cli import app
    from conftest import small_images

    folder = small_images(tmp_path / "imgs", 3)
    out = tmp_path / "out"

    def run():
        r = CliRunner().invoke(app, [str(folder), "-o", str(out), "-q", "--bins", "64"])
        assert r.exit_code == 0, r.output
        return out

    return run


def _sources(report: Path) -> list[str]:
    import re

    return re.findall(r'data-src="([^"]*)"', report.read_text(encoding="utf-8"))


PLANTED = "window.pwned=1;(window.aptvizPending=window.aptvizPending||[]).push({});\n"


def test_a_planted_explorer_file_or_a_path_outside_the_folder_is_never_run(tmp_path):
    run = _small_batch(tmp_path)
    out = run()
    assert _sources(out / "report.html") == ["img00/explorer.js", "img01/explorer.js", "img02/explorer.js"]
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "x.js").write_text("window.pwned=2;")
    (out / "img01" / "explorer.js").write_text(PLANTED)
    stats = json.loads((out / "img02" / "stats.json").read_text())
    stats["files"]["explorer"] = "../../evil/x.js"
    (out / "img02" / "stats.json").write_text(json.dumps(stats))
    run()  # the resumed batch: both images are written again, every explorer is the run's own
    sources = _sources(out / "report.html")
    assert sources == ["img00/explorer.js", "img01/explorer.js", "img02/explorer.js"]
    from aptviz.render.explorer import is_data_script

    assert all(is_data_script((out / s).read_bytes()) for s in sources)


def test_the_report_drops_an_explorer_file_planted_after_the_run(tmp_path, capfd):
    from aptviz._log import logger
    from aptviz.runs.dataset_view import write_dataset_view

    out = _small_batch(tmp_path)()
    rows = json.loads((out / "summary.json").read_text())
    images = [(str(out / f"img{i:02d}"), json.loads((out / f"img{i:02d}" / "stats.json").read_text())) for i in range(3)]
    (out / "img01" / "explorer.js").write_text(PLANTED)
    images[2][1]["files"]["explorer"] = "../../evil/x.js"
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    logger.enable("aptviz")
    try:
        assert write_dataset_view(out, rows, list(rows[0]), images, figures=False) == []
    finally:
        logger.remove(sink)
    assert _sources(out / "report.html") == ["img00/explorer.js"]
    assert len(lines) == 2 and all("is not the explorer data aptviz writes" in line for line in lines)


@pytest.mark.parametrize("content", [
    b"alert(1)",
    PLANTED.encode(),
    b"(window.aptvizPending=window.aptvizPending||[]).push({});alert(1);\n",
    b"(window.aptvizPending=window.aptvizPending||[]).push({}),alert(1)//);\n",
    b"(window.aptvizPending=window.aptvizPending||[]).push({}),alert({});\n",
    b"(window.aptvizPending=window.aptvizPending||[]).push(NaN);\n",
    b"(window.aptvizPending=window.aptvizPending||[]).push([alert]);\n",
    b"(window.aptvizPending=window.aptvizPending||[]).push({\"a\":1});\n//x",
    b"\xef\xbb\xbf(window.aptvizPending=window.aptvizPending||[]).push({});\n",
    b"(window.aptvizPending=window.aptvizPending||[]).push({\"a\":\"\xff\"});\n",
    b"(window.aptvizPending=window.aptvizPending||[]).push({\"a\":" + b"[" * 200000 + b"]" * 200000 + b"});\n",
])
def test_only_pure_data_passes_as_an_explorer_file(content):
    from aptviz.render.explorer import data_script, is_data_script

    assert not is_data_script(content)
    assert is_data_script(data_script({"name": "</script>\u2028", "v": [1.5, None, True]}).encode("utf-8"))


@needs_chromium
def test_an_unknown_start_method_starts_with_v2(browser, results, tmp_path):
    """``data-method`` comes from stats.json in a report: a name that is no method must not break the card."""
    from aptviz.render.explorer import explorer_element

    res = results["chelsea"]
    data = explorer_data("chelsea", res.loaded.image, res.resized, res.maps, res.params)
    page = tmp_path / "m.html"
    page.write_text(f"<!DOCTYPE html><html><body>{explorer_element('chelsea', data, method='constructor')}"
                    f"<script>{explorer_script()}</script></body></html>", encoding="utf-8")
    pg = _open(browser, page.as_uri())
    _built(pg, 1)
    assert pg.eval_on_selector("[data-image=chelsea] select[name=method]", "e => e.value") == "v2"
    shown = pg.eval_on_selector("[data-image=chelsea] [data-field=vit_tokens]", "e => e.dataset.value")
    assert int(shown) == aptviz.select_patches(res.maps, "v2", 1.0).tokens
    assert not pg.errors, pg.errors
    pg.close()


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(1, 9000), aspect=st.floats(0.02, 50), lo=st.integers(-5, 4000), span=st.integers(-3, 3000),
    patch=st.sampled_from([1, 8, 14, 16]), merge=st.integers(1, 3), min_pixels=st.sampled_from([1, 3136, 65536]),
)
def test_uniform_sizes_are_smart_resize_at_every_token_count(h, aspect, lo, span, patch, merge, min_pixels):
    """The vectorized table equals smart_resize called for every token count (as before)."""
    from aptviz.compute.resize import smart_resize
    from aptviz.compute.explorer_data import uniform_sizes

    w = max(1, min(round(h * aspect), h * 199))
    if max(h, w) / min(h, w) > 200:
        return
    expected: list = []
    for t in range(max(lo, 0), lo + span + 1):
        mp = t * patch * patch
        hw = smart_resize(h, w, patch * merge, min(min_pixels, mp), max(mp, 1))
        if not expected or expected[-1][1] != hw:
            expected.append((t, hw))
    assert uniform_sizes((h, w), lo, lo + span, patch, merge, min_pixels) == expected
