"""A video's pictures, in memory (docs/video.md): token timeline, contact sheet, animated overlay, report card.

Everything is drawn from the computed :class:`~aptviz.compute.video.VideoAnalysis`
and its stats (counts per tubelet); nothing is computed here. Each tubelet
is shown by its first frame with the boundaries of its APT patches; with a
static threshold, its static merge units are shaded (patches lying wholly
in them are the ones the static rule drops).
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterator

import numpy as np
from PIL import Image

from aptviz._text import terminal_text
from aptviz.compute.stats import ImageStats
from aptviz.compute.video import VideoAnalysis
from aptviz.render.image_pictures import Picture, RenderOptions
from aptviz.render.pictures import draw_overlay, text_strip

__all__ = [
    "CONTACT_TUBELETS",
    "STATIC_COLOR",
    "contact_sheet",
    "iter_video_pictures",
    "nice_step",
    "shade_static",
    "shown_tubelets",
    "timeline_png",
    "tubelet_overlay",
]

CONTACT_TUBELETS = 16  # tubelets on the contact sheet
SCRUBBER_TUBELETS = 64  # tubelets the report card's scrubber steps through
ANIMATION_TUBELETS = 128  # frames of the animated overlay at most
THUMB_WIDTH = 320  # contact sheet and scrubber tiles
ANIMATION_WIDTH = 480
STATIC_COLOR = (40, 70, 200)  # static units: blended half-way towards this blue
GAP = 6


def shown_tubelets(n: int, most: int) -> list[int]:
    """At most ``most`` tubelet indices spread evenly over ``n`` (first and last included).

    Examples
    --------
    >>> shown_tubelets(5, 16), shown_tubelets(100, 4)
    ([0, 1, 2, 3, 4], [0, 33, 66, 99])
    """
    return sorted({int(i) for i in np.round(np.linspace(0, n - 1, min(n, most)))})


def shade_static(picture: np.ndarray, static: np.ndarray, unit: int) -> np.ndarray:
    """``picture`` with its static merge units blended half-way towards :data:`STATIC_COLOR`.

    Examples
    --------
    >>> pic = shade_static(np.zeros((28, 56, 3), np.uint8), np.array([[True, False]]), 28)
    >>> pic[0, 0].tolist(), pic[0, 30].tolist()
    ([20, 35, 100], [0, 0, 0])
    """
    cover = np.repeat(np.repeat(static, unit, axis=0), unit, axis=1)[: picture.shape[0], : picture.shape[1]]
    blended = ((picture.astype(np.uint16) + np.array(STATIC_COLOR, dtype=np.uint16)) // 2).astype(np.uint8)
    return np.where(cover[..., None], blended, picture)


def _scaled(picture: np.ndarray, width: int) -> np.ndarray:
    """``picture`` scaled (area-averaged) to ``width`` px wide when wider."""
    h, w = picture.shape[:2]
    if w <= width:
        return picture
    size = (width, max(1, round(h * width / w)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BOX))


def tubelet_overlay(
    frame: np.ndarray, masks: dict, static: np.ndarray | None, unit: int, options: RenderOptions, width: int
) -> np.ndarray:
    """One tubelet's first frame, static units shaded, APT boundaries drawn, scaled to ``width`` px at most.

    Lines are drawn thick enough to stay ``options.line_width`` px wide once scaled.
    """
    zoom = min(1.0, width / frame.shape[1])
    line = max(1, min(16, round(options.line_width / zoom)))
    pic = frame if static is None else shade_static(frame, static, unit)
    return _scaled(draw_overlay(pic, masks, line, options.color_by_scale), width)


def _tile_caption(stats: ImageStats, j: int, i: int) -> list[str]:
    sel, time = stats.selections[j], stats.time
    seconds = time.tubelet_seconds[i] if time and time.tubelet_seconds else 0.0
    llm, uniform = sel.tubelet_llm_tokens[i], sel.tubelet_uniform_llm_tokens[i]
    text = f"tubelet {i} · {seconds:.2f} s · " + (f"LLM {llm}/{uniform}" if llm is not None
                                                    else f"ViT {sel.tubelet_vit_tokens[i]}")  # fmt: skip
    if sel.tubelet_static_llm_tokens is not None:
        text += f" · static {sel.tubelet_static_llm_tokens[i]}"
    return [text]


def contact_sheet(tiles: list[np.ndarray], captions: list[list[str]], columns: int = 4) -> np.ndarray:
    """Tiles (same width) with their captions, in a grid of ``columns``, on white.

    Examples
    --------
    >>> sheet = contact_sheet([np.zeros((10, 40, 3), np.uint8)] * 5, [["a"]] * 5, columns=4)
    >>> sheet.shape[1], sheet.dtype
    (190, dtype('uint8'))
    """
    width = tiles[0].shape[1]
    cells = [np.concatenate([t, text_strip(c, width, font_size=12)]) for t, c in zip(tiles, captions)]
    height = max(c.shape[0] for c in cells)
    columns = min(columns, len(cells))
    rows = -(-len(cells) // columns)
    sheet = np.full((rows * (height + GAP) + GAP, columns * (width + GAP) + GAP, 3), 255, np.uint8)
    for k, cell in enumerate(cells):
        y, x = GAP + (k // columns) * (height + GAP), GAP + (k % columns) * (width + GAP)
        sheet[y : y + cell.shape[0], x : x + cell.shape[1]] = cell
    return sheet


LINE_COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (140, 86, 75), (23, 190, 207))
UNIFORM_COLOR = (110, 110, 110)


def nice_step(span: float, most: int = 8) -> float:
    """A tick step of 1, 2 or 5 times a power of ten giving at most ``most`` intervals over ``span``.

    Examples
    --------
    >>> nice_step(3.0), nice_step(132), nice_step(0)
    (0.5, 20.0, 1.0)
    """
    if span <= 0:
        return 1.0
    power = 10.0 ** np.floor(np.log10(span / most))
    return float(next(m * power for m in (1, 2, 5, 10) if span / (m * power) <= most))


def _dashed(draw, points: list[tuple[float, float]], color, width: int, on: int = 7, off: int = 5) -> None:
    """A dashed polyline of axis-aligned segments (the steps of a step plot)."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = abs(x1 - x0) + abs(y1 - y0)
        for a in np.arange(0, length, on + off):
            b = min(a + on, length)
            f0, f1 = a / length, b / length
            draw.line([(x0 + (x1 - x0) * f0, y0 + (y1 - y0) * f0), (x0 + (x1 - x0) * f1, y0 + (y1 - y0) * f1)],
                      fill=color, width=width)  # fmt: skip


def _legend_rows(entries: list, font, width: float) -> list[list]:
    """Legend entries ``(name, colour, style)`` in rows that fit ``width`` px (a 34 px line sample before each)."""
    from PIL import ImageDraw

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows, row, used = [], [], 0.0
    for entry in entries:
        need = 34 + measure.textlength(entry[0], font=font) + 18
        if row and used + need > width:
            rows.append(row)
            row, used = [], 0.0
        row.append(entry)
        used += need
    return [*rows, row] if row else rows


def timeline_png(seconds: list[float], end: float, uniform: list[int], lines: list[tuple[str, list[int], str]],
                 title: str = "") -> bytes:  # fmt: skip
    """LLM tokens per tubelet against time, as PNG bytes (Pillow: no matplotlib needed).

    Each tubelet is a step from its start (``seconds``) to the next one's
    (the last to ``end``): uniform in grey, and each ``(label, counts,
    linestyle)`` (``"-"`` solid, ``"--"`` dashed) in turn in the line colours
    (a dashed line takes the colour of the solid line before it).
    """
    from PIL import ImageDraw, ImageFont

    lines = [line for line in lines if None not in line[1]]  # no LLM count where merge units do not nest
    uniform = [] if None in uniform else uniform
    width, left, right, top = 820, 70, 20, 34
    font = ImageFont.load_default(size=13)
    legend_rows = _legend_rows([("uniform (Qwen2-VL)", UNIFORM_COLOR, "-")] + [(n, None, s) for n, _, s in lines],
                               font, width - left - right)  # fmt: skip
    bottom = 52 + 18 * len(legend_rows)
    height = 300 + bottom
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    xs = [*seconds, max(end, seconds[-1] + 1e-9)]
    top_value = max([*uniform, *(max(c) for _, c, _ in lines), 1]) * 1.08
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(t: float, v: float) -> tuple[float, float]:
        return left + plot_w * t / xs[-1], top + plot_h * (1 - v / top_value)

    for v in np.arange(0, top_value, nice_step(top_value)):
        y = px(0, v)[1]
        draw.line([(left, y), (width - right, y)], fill=(230, 230, 230))
        draw.text((left - 6, y), f"{v:g}", fill=(0, 0, 0), font=font, anchor="rm")
    for t in np.arange(0, xs[-1] + 1e-9, nice_step(xs[-1])):
        x = px(t, 0)[0]
        draw.line([(x, top + plot_h), (x, top + plot_h + 4)], fill=(0, 0, 0))
        draw.text((x, top + plot_h + 6), f"{t:g}", fill=(0, 0, 0), font=font, anchor="mt")
    draw.rectangle([(left, top), (width - right, top + plot_h)], outline=(0, 0, 0))
    draw.text((left + plot_w / 2, top + plot_h + 24), "time (s, tubelet start)", fill=(0, 0, 0), font=font,
              anchor="mt")  # fmt: skip
    label = Image.new("RGB", (plot_h, 18), (255, 255, 255))
    ImageDraw.Draw(label).text((plot_h / 2, 9), "LLM tokens per tubelet", fill=(0, 0, 0), font=font, anchor="mm")
    img.paste(label.rotate(90, expand=True), (4, top))
    if title:
        draw.text((left + plot_w / 2, 8), title[-100:], fill=(0, 0, 0), font=font, anchor="mt")

    def steps(counts: list[int]) -> list[tuple[float, float]]:
        pts = []
        for i, c in enumerate(counts):
            pts += [px(xs[i], c), px(xs[i + 1], c)]
        return pts

    legend = [("uniform (Qwen2-VL)", UNIFORM_COLOR, "-")]
    if uniform:
        draw.line(steps(uniform), fill=UNIFORM_COLOR, width=2)
    k = -1
    for name, counts, style in lines:
        k += style != "--"
        color = LINE_COLORS[max(k, 0) % len(LINE_COLORS)]
        if style == "--":
            _dashed(draw, steps(counts), color, 2)
        else:
            draw.line(steps(counts), fill=color, width=2)
        legend.append((name, color, style))
    colors = iter(legend)
    y = top + plot_h + 44
    for row in legend_rows:
        x = left
        for name, _, style in row:
            color = next(colors)[1]
            if style == "--":
                _dashed(draw, [(x, y + 7), (x + 28, y + 7)], color, 2, 5, 3)
            else:
                draw.line([(x, y + 7), (x + 28, y + 7)], fill=color, width=2)
            draw.text((x + 34, y), name, fill=(0, 0, 0), font=font)
            x += 34 + draw.textlength(name, font=font) + 18
        y += 18
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _gif(frames: list[np.ndarray], duration_ms: int) -> bytes:
    """An endlessly looping GIF of ``frames`` (one palette each), ``duration_ms`` per frame."""
    images = [Image.fromarray(f).quantize(255, Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return buf.getvalue()


def _card(stats: ImageStats, files: dict, per: list[dict], tile: tuple[int, int], shown: list[int]) -> bytes:
    """card.html: the video's numbers, its timeline, and a tubelet scrubber over the scrubber strip."""
    time = stats.time
    sel = stats.selections[0]
    rows = [
        {
            "i": i,
            "t": round(time.tubelet_seconds[i], 3),
            "apt": sel.tubelet_llm_tokens[i],
            "uniform": sel.tubelet_uniform_llm_tokens[i],
            "static": None if sel.tubelet_static_llm_tokens is None else sel.tubelet_static_llm_tokens[i],
        }
        for i in shown
    ]
    totals = "".join(
        f"<tr><td>{html.escape(s.method)} {'' if s.alpha is None else s.alpha}</td><td>{s.llm_tokens_uniform}</td>"
        f"<td>{s.llm_tokens}</td><td>{'-' if s.static_llm_tokens is None else s.static_llm_tokens}</td></tr>"
        for s in stats.selections
    )
    w, h = tile
    name = html.escape(terminal_text(stats.image.path))  # bidi controls shown as \u202e: no reordered names
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name}</title>
<style>body{{font:14px system-ui,sans-serif;margin:1.5em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
#tile{{width:{w}px;height:{h}px;background:url('{files['scrubber']}') 0 0 no-repeat;border:1px solid #888}}</style>
</head><body>
<h1>{name}</h1>
<p>{time.frames} frames of {time.total_frames} ({time.fps:.3g} per second of a {time.video_fps:.3g} fps video),
{time.tubelets} tubelets of {stats.params.temporal_patch_size} frames,
{stats.image.resized_size[0]}x{stats.image.resized_size[1]} px each.
Static threshold: {'off' if time.static_threshold is None else time.static_threshold}.</p>
<table><tr><th>selection</th><th>LLM uniform</th><th>LLM APT</th><th>LLM APT + static</th></tr>{totals}</table>
<h2>Tubelets</h2>
<p>{" · ".join(f'<a href="{html.escape(f["contact_sheet"])}">contact sheet</a> · '
               f'<a href="{html.escape(f["animation"])}">animation</a>' for f in per)}</p>
<input id="scrub" type="range" min="0" max="{len(rows) - 1}" value="0" style="width:{w}px" aria-label="tubelet">
<p id="label"></p><div id="tile" role="img" aria-label="tubelet overlay"></div>
<h2>LLM tokens per tubelet</h2><img src="{files['timeline']}" alt="token timeline" style="max-width:100%">
<script>
const rows = {json.dumps(rows)};
const scrub = document.getElementById("scrub"), label = document.getElementById("label");
const tile = document.getElementById("tile");
function show(k) {{
  const r = rows[k];
  tile.style.backgroundPosition = "0 -" + (k * {h}) + "px";
  label.textContent = "tubelet " + r.i + " at " + r.t + " s: LLM tokens " + r.apt + " (uniform " + r.uniform + ")"
    + (r.static === null ? "" : ", " + r.static + " with the static rule");
}}
scrub.addEventListener("input", () => show(+scrub.value));
show(0);
</script>
</body></html>
"""
    return page.encode("utf-8")


def iter_video_pictures(va: VideoAnalysis, stats: ImageStats, options: RenderOptions) -> Iterator[tuple[str, object]]:
    """Every picture of one video's folder, keyed by its path in the folder (``stats.files`` names them).

    Yields the timeline, then per selection its contact sheet and animated
    overlay, then the scrubber strip and the report card.
    """
    unit = va.params.factor
    time = stats.time
    seconds = time.tubelet_seconds
    first = stats.selections[0]
    lines = []
    for s in stats.selections:
        label = f"APT {s.method}" + ("" if s.alpha is None else f" {s.alpha:g}")
        lines.append((label, s.tubelet_llm_tokens, "-"))
        if s.tubelet_static_llm_tokens is not None:
            lines.append((f"{label} + static (T={time.static_threshold:g})", s.tubelet_static_llm_tokens, "--"))
    end = time.total_frames / time.video_fps
    yield stats.files["timeline"], timeline_png(seconds, end, first.tubelet_uniform_llm_tokens, lines,
                                                 stats.image.path)  # fmt: skip

    thumbs: dict = {}  # the first selection's thumbnails: the scrubber reuses the contact sheet's

    def overlay(j: int, i: int, width: int) -> np.ndarray:
        if (j, i, width) in thumbs:
            return thumbs[j, i, width]
        pic = tubelet_overlay(va.tubelets[i].resized, va.tubelets[i].selections[j].selection.masks,
                              None if va.static is None else va.static[i], unit, options, width)  # fmt: skip
        if j == 0 and width == THUMB_WIDTH:
            thumbs[j, i, width] = pic
        return pic

    def overlays(j: int, shown: list[int], width: int) -> list[np.ndarray]:
        return [overlay(j, i, width) for i in shown]

    n = len(va.tubelets)
    for j, sel in enumerate(stats.selections):
        shown = shown_tubelets(n, CONTACT_TUBELETS)
        tiles = overlays(j, shown, THUMB_WIDTH)
        sheet = contact_sheet(tiles, [_tile_caption(stats, j, i) for i in shown])
        yield sel.files["contact_sheet"], Picture(sheet, 95, chroma_444=True)
        frames = overlays(j, shown_tubelets(n, ANIMATION_TUBELETS), ANIMATION_WIDTH)
        step_ms = max(20, round(1000 * va.temporal / max(time.fps, 1e-6)))
        yield sel.files["animation"], _gif(frames, step_ms)
    shown = shown_tubelets(n, SCRUBBER_TUBELETS)
    strip = np.concatenate(overlays(0, shown, THUMB_WIDTH))
    tile = (strip.shape[1], strip.shape[0] // len(shown))
    yield stats.files["scrubber"], Picture(strip, 90, chroma_444=True)
    yield stats.files["card"], _card(stats, stats.files, [s.files for s in stats.selections], tile, shown)
