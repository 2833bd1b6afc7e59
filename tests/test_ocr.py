"""--ocr: Tesseract's character accuracy on the model view and both uniform views (SPEC 17)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, invoke
from hypothesis import given
from hypothesis import strategies as st

import aptviz
from aptviz.compute.ocr import character_accuracy, edit_distance, normalize_text
from aptviz.compute.views import llm_uniform_view
from aptviz.compute.views import uniform_view

SAMPLES_PHOTO = SAMPLES / "chelsea.png"
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")

LINES = [
    "The quick brown fox jumps over",
    "the lazy dog near the river bank.",
    "Adaptive patches keep small text",
    "legible at 1234 tokens or more.",
]


def page(path, lines=LINES, size=(672, 336)):
    """A page of large clear black text on white, drawn here (Pillow's default TrueType font)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=30)
    for i, line in enumerate(lines):
        draw.text((20, 20 + 74 * i), line, fill="black", font=font)
    img.save(path)
    return path


def reference_distance(a: str, b: str) -> int:
    """Levenshtein distance, the textbook double loop (the reference for the NumPy rows)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@given(st.text(alphabet="abcé x\n", max_size=30), st.text(alphabet="abcé x\n", max_size=30))
def test_edit_distance_is_levenshtein(a, b):
    assert edit_distance(a, b) == reference_distance(a, b)


@given(st.text(max_size=40), st.text(max_size=40))
def test_character_accuracy_is_one_minus_cer_clipped(ref, hyp):
    acc = character_accuracy(ref, hyp)
    r, h = normalize_text(ref), normalize_text(hyp)
    if not r:
        assert acc is None
        return
    assert 0.0 <= acc <= 1.0
    assert acc == pytest.approx(max(0.0, 1.0 - reference_distance(r, h) / len(r)))
    assert character_accuracy(ref, ref) == 1.0


def test_llm_uniform_view_follows_the_equal_llm_rule(samples):
    """max_pixels = llm_tokens * (P*m)^2, the same resize and display as the equal-ViT baseline."""
    from PIL import Image

    img = Image.open(samples / "chelsea.png").convert("RGB")
    for llm in (20, 49, 98):
        view = llm_uniform_view(img, (448, 308), llm)
        assert view.max_pixels == llm * 28 * 28
        assert view.vit_tokens // 4 <= llm  # its LLM tokens never exceed APT's
        assert view.image.shape == (308, 448, 3)
        same = uniform_view(img, (448, 308), llm * 4)
        assert view.size == same.size and np.array_equal(view.image, same.image)


@needs_tesseract
@pytest.mark.slow
def test_ocr_scores_on_a_page_of_text(tmp_path):
    """Everything kept reads as the resized image; a tiny budget loses characters."""
    path = page(tmp_path / "page.png")
    full = aptviz.analyze(path, methods=["budget"], alphas=[1.0], ocr=True)
    low = aptviz.analyze(path, methods=["budget"], alphas=[0.05], ocr=True)
    assert full["params"]["ocr"] is True
    f, lo = full["selections"][0], low["selections"][0]
    assert f["ocr_apt"] == pytest.approx(1.0, abs=0.02) and f["ocr_uniform"] == pytest.approx(1.0, abs=0.02)
    assert lo["ocr_apt"] < 0.95 and lo["ocr_uniform"] < 0.95
    for key in ("ocr_apt", "ocr_uniform", "ocr_uniform_llm"):
        assert 0.0 <= lo[key] <= 1.0
    assert lo["ocr_apt"] < f["ocr_apt"]


@needs_tesseract
def test_ocr_is_null_without_text(make_image):
    """A picture without text (blank page): every field null, not 0 or 1."""
    from PIL import Image

    path = make_image("blank.png")
    Image.new("RGB", (224, 168), "white").save(path)
    sel = aptviz.analyze(path, methods=["budget"], alphas=[0.3], ocr=True)["selections"][0]
    assert {k: sel[k] for k in ("ocr_apt", "ocr_uniform", "ocr_uniform_llm")} == dict.fromkeys(
        ("ocr_apt", "ocr_uniform", "ocr_uniform_llm")
    )


def test_without_ocr_nothing_changes(samples):
    """No --ocr: neither the params nor the selections carry an OCR key (stats.json as before)."""
    stats = aptviz.analyze(samples / "chelsea.png", methods=["budget"], alphas=[0.3])
    assert "ocr" not in stats["params"]
    assert not any(k.startswith("ocr") for k in stats["selections"][0])


def test_ocr_without_tesseract_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    path = page(tmp_path / "page.png")
    r = invoke(path, "-o", tmp_path / "out", "-m", "budget:0.3", "--ocr")
    assert r.exit_code == 2
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--ocr needs Tesseract" in lines[0] and "tesseract-ocr" in lines[0]
    assert "Traceback" not in r.output and not (tmp_path / "out").exists()


def test_the_library_refuses_ocr_without_tesseract(tmp_path, monkeypatch):
    from aptviz.errors import MissingExtraError

    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(MissingExtraError, match="Tesseract"):
        aptviz.run([page(tmp_path / "page.png")], tmp_path / "out", ["budget:0.3"], aptviz.Params(ocr=True))
    assert not (tmp_path / "out").exists()


@needs_tesseract
@pytest.mark.slow
def test_ocr_batch_summary_report_and_figure(tmp_path, samples):
    """A page and a photo: the fields in stats.json, summary.csv/json, report.html and ocr_vs_tokens.png."""
    folder = tmp_path / "in"
    folder.mkdir()
    page(folder / "page.png")
    shutil.copy(samples / "chelsea.png", folder / "chelsea.png")
    out = tmp_path / "out"
    r = invoke(folder, "-o", out, "-m", "budget:0.1,1", "--ocr", "-j", "1", "-q")
    assert r.exit_code == 0, r.output
    stats = json.loads((out / "page" / "stats.json").read_text())
    assert stats["params"]["ocr"] is True
    assert [s["ocr_apt"] for s in stats["selections"]][1] == pytest.approx(1.0, abs=0.02)
    rows = json.loads((out / "summary.json").read_text())
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[-5:] == ["ocr_apt", "ocr_uniform", "ocr_uniform_llm", "output", "error"]
    by_image = {(r["image"].rsplit("/", 1)[-1], r["alpha"]): r for r in rows}
    assert by_image[("page.png", 0.1)]["ocr_apt"] < by_image[("page.png", 1.0)]["ocr_apt"]
    assert all(r[k] is None or 0 <= r[k] <= 1 for r in rows for k in ("ocr_apt", "ocr_uniform", "ocr_uniform_llm"))
    html = (out / "report.html").read_text()
    assert "OCR accuracy of APT" in html and "ocr_vs_tokens.png" in html
    from PIL import Image

    assert Image.open(out / "ocr_vs_tokens.png").size[0] > 400


def test_ocr_figure_only_with_text_rows():
    from aptviz.compute.fidelity import ocr_points
    from aptviz.render.figures import ocr_curves_png

    base = {"status": "ok", "method": "budget", "importance": "entropy", "base_small_tokens": 100,
            "llm_tokens_uniform": 25, "uniform_vit_tokens": 40}  # fmt: skip
    assert ocr_curves_png(ocr_points([dict(base, alpha=0.3, llm_retention=0.5, ocr_apt=None)])) is None
    rows = [dict(base, alpha=a, llm_retention=a + 0.2, ocr_apt=a, ocr_uniform=a, ocr_uniform_llm=1.0) for a in (0.3, 0.6)]
    png = ocr_curves_png(ocr_points(rows))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_terminal_table_names_the_ocr_scores():
    from rich.console import Console

    from aptviz.cli.visualize import image_table
    from aptviz.compute.stats import ImageStats

    data = aptviz.analyze(SAMPLES_PHOTO, ["budget:0.3"])
    data["params"]["ocr"] = True
    data["selections"][0].update(ocr_apt=0.5, ocr_uniform=0.25, ocr_uniform_llm=1.0)
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(image_table(ImageStats.from_dict(data)))
    text = " ".join(console.export_text().split())
    assert "OCR accuracy, APT / uniform at equal ViT / at equal LLM tokens: budget 0.3 0.500/0.250/1.000" in text


@needs_tesseract
@pytest.mark.slow
def test_report_cards_show_ocr_scores_in_a_browser(tmp_path, samples, chromium):
    """report.html of an --ocr batch, opened in headless Chromium: the page's numbers and "no text" for a photo."""
    folder = tmp_path / "in"
    folder.mkdir()
    page(folder / "apage.png")
    shutil.copy(samples / "chelsea.png", folder / "chelsea.png")
    out = tmp_path / "out"
    assert invoke(folder, "-o", out, "-m", "budget:0.1", "--ocr", "-j", "1", "-q").exit_code == 0
    expected = json.loads((out / "apage" / "stats.json").read_text())["selections"][0]["ocr_apt"]
    pg = chromium.new_page(viewport={"width": 1400, "height": 900})  # the session's one Chromium (conftest)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto((out / "report.html").as_uri(), wait_until="load")
    for card in pg.query_selector_all(".card"):
        card.scroll_into_view_if_needed()
    pg.wait_for_function("document.querySelectorAll('.card[data-done] td[data-n=\"ocr_apt\"]').length == 2")
    shown = pg.eval_on_selector_all('td[data-n="ocr_apt"]', "t => t.map(x => x.textContent)")
    labels = pg.eval_on_selector_all("table.num td:first-child", "t => t.map(x => x.textContent)")
    pg.close()
    assert sorted(shown) == sorted([f"{expected:.3f}", "no text"])
    assert "OCR accuracy of uniform, equal LLM tokens (0-1)" in labels
    assert errors == []


@needs_tesseract
def test_ocr_is_part_of_the_resume_key(tmp_path):
    from aptviz.compute.params import Params, RunSpec
    from aptviz.runs.batch import is_complete

    path = page(tmp_path / "page.png")
    out = tmp_path / "out"
    assert invoke(path, "-o", out, "-m", "budget:0.3", "-q").exit_code == 0
    runs = [RunSpec("budget", 0.3)]
    assert is_complete(out / "page", runs, Params(), False) is not None
    assert is_complete(out / "page", runs, Params(ocr=True), False) is None  # asked now: computed again
    assert invoke(path, "-o", out, "-m", "budget:0.3", "-q", "--ocr").exit_code == 0
    assert "ocr_apt" in json.loads((out / "page" / "stats.json").read_text())["selections"][0]
    assert is_complete(out / "page", runs, Params(ocr=True), False) is not None


# ----------------------------------------------------------------------------- adversarial pass (issue 27)


def fake_tesseract(folder: Path, body: str) -> Path:
    """An executable ``tesseract`` shell script in ``folder`` (put first on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / "tesseract"
    listing = 'if [ "$1" = "--list-langs" ]; then printf "Languages (2):\\neng\\nosd\\n"; exit 0; fi\n'
    program.write_text("#!/bin/sh\n" + listing + "cat > /dev/null\n" + body + "\n")
    program.chmod(0o755)
    return program


def test_a_tesseract_printing_more_text_than_the_picture_holds_is_one_error(tmp_path, monkeypatch):
    """A broken tesseract printing 400 kB of junk stalled the batch for hours: the character accuracy is a
    quadratic edit distance (400k x 400k cells). Its output is refused at once, image by image."""
    from aptviz.compute.ocr import read_text
    from aptviz.errors import InputError

    program = fake_tesseract(tmp_path / "bin", "head -c 30000 /dev/zero | tr '\\0' x")
    with pytest.raises(InputError, match=r"Tesseract printed 30000 characters for a 140x112 picture"):
        read_text(np.zeros((112, 140, 3), np.uint8), str(program))
    ok = fake_tesseract(tmp_path / "ok", "echo 'Hello world'")
    assert read_text(np.zeros((1, 1, 3), np.uint8), str(ok)).strip() == "Hello world"  # a 1x1 picture may read text
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{Path(shutil.which('sh')).parent}")
    pages = [page(tmp_path / "a.png"), page(tmp_path / "b.png", lines=LINES[:2])]
    r = invoke(*pages, "-o", tmp_path / "out", "-m", "budget:0.3", "--ocr", "-j", "1")
    assert r.exit_code == 1 and "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if "Tesseract printed" in line]
    assert len(errors) == 2 and all("not a reading" in line for line in errors)


@needs_tesseract
def test_ocr_on_a_video_of_text_does_not_claim_there_is_no_text(tmp_path):
    """`--ocr` on a clip of a clear page printed "OCR accuracy: no text in the image": videos are not read."""
    import cv2
    from PIL import Image

    frame = np.asarray(Image.open(page(tmp_path / "p.png")).convert("RGB"))
    out = cv2.VideoWriter(str(tmp_path / "text.mkv"), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, frame.shape[1::-1])
    for _ in range(4):
        out.write(np.ascontiguousarray(frame[..., ::-1]))
    out.release()
    r = invoke(tmp_path / "text.mkv", "-o", tmp_path / "out", "-m", "budget:0.3", "--ocr", "-j", "1")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "no text in the image" not in text and "OCR accuracy: not measured on videos" in text
    # report.html says the same: "\u2013" (not measured) in the card and the table, never "no text"
    import json
    import re

    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="aptviz-data">(.*?)</script>', html, re.S).group(1))
    keys = [k for k, _, _ in data["numbers"]]
    assert "ocr_apt" in keys
    (card,) = data["cards"]
    numbers = card["sels"][0]["numbers"]
    assert all(numbers[keys.index(k)] == "\u2013" for k in ("ocr_apt", "ocr_uniform", "ocr_uniform_llm"))
    table = data["table"]
    (row,) = table["rows"]
    for k in ("ocr_apt", "ocr_uniform"):
        if k in table["columns"]:
            assert row[table["columns"].index(k)] == "\u2013", k


def test_a_broken_or_hung_tesseract_is_one_error_before_any_work(tmp_path, monkeypatch):
    """A tesseract without English data (or printing junk, or hanging) failed every image alike, a hung one after
    120 s each: `--list-langs` is checked once at the start (exit 2, nothing written)."""
    from aptviz.compute.ocr import check_tesseract
    from aptviz.errors import MissingExtraError

    shell = Path(shutil.which("sh")).parent
    no_eng = tmp_path / "noeng"
    no_eng.mkdir()
    (no_eng / "tesseract").write_text('#!/bin/sh\necho "Error opening data file eng.traineddata" >&2\nexit 1\n')
    (no_eng / "tesseract").chmod(0o755)
    monkeypatch.setenv("PATH", f"{no_eng}:{shell}")
    r = invoke(page(tmp_path / "p.png"), "-o", tmp_path / "out", "-m", "budget:0.3", "--ocr")
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(" ".join(lines).split("aptviz: error:")) == 2, r.output
    assert "English data" in r.output and "eng.traineddata" in r.output and not (tmp_path / "out").exists()
    hung = fake_tesseract(tmp_path / "hung", "")
    hung.write_text("#!/bin/sh\nexec sleep 30\n")
    monkeypatch.setenv("PATH", f"{hung.parent}:{shell}")
    with pytest.raises(MissingExtraError, match="took longer than 1 s"):
        check_tesseract(timeout=1)
    monkeypatch.setenv("PATH", f"{fake_tesseract(tmp_path / 'ok', 'echo hi').parent}:{shell}")
    assert check_tesseract().endswith("ok/tesseract")
