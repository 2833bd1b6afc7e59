"""The explorer's pages: the element, the script, the data file (docs/explorer.md).

The data itself (map values, v2 means, budget's split order, per-cell
errors, the uniform table) is computed before rendering, by
:mod:`aptviz.compute.explorer_data`; the page redoes the selection from it
(``explorer.js``). Nothing here computes a number or writes a file.
"""

from __future__ import annotations

__all__ = [
    "CSS",
    "data_script",
    "dataset_element",
    "explorer_element",
    "explorer_file",
    "explorer_fragment",
    "explorer_page",
    "explorer_script",
    "is_data_script",
]


def explorer_file(stats, data: dict | None) -> list[tuple[str, bytes]]:
    """``[(stats.files["explorer"], bytes)]``: an image folder's explorer data file, when there is data."""
    return [] if data is None else [(stats.files["explorer"], data_script(data).encode("utf-8"))]


# ---- pages -------------------------------------------------------------------------------------------------

CSS = """
[data-aptviz-explorer],[data-aptviz-dataset]{font:13px/1.4 system-ui,sans-serif;border:1px solid #ddd;border-radius:6px;
padding:.5em .8em;margin:.6em 0;background:#fff;color:#222;max-width:100%;box-sizing:border-box;overflow:hidden}
.apx-controls{display:flex;flex-wrap:wrap;gap:.3em 1.2em;align-items:center;margin-bottom:.4em}
.apx-controls input[type=range]{width:11em;vertical-align:middle}
.apx-views{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}.apx-views figure{margin:0}
.apx-views canvas{max-width:100%;max-height:360px;border:1px solid #ccc;display:block}
.apx-views figcaption{font-size:11px;color:#555}
table.apx-num td{padding:1px 8px 1px 0;font-size:12px}table.apx-num td[data-field]{font-variant-numeric:tabular-nums}
canvas.apx-strip{max-width:100%;border:1px solid #ccc}.apx-status{color:#777}
[data-aptviz-explorer][data-src]{min-height:430px}
"""


def explorer_script() -> str:
    """The explorer's JavaScript (package data ``aptviz/render/explorer.js``)."""
    from importlib.resources import files

    return files("aptviz.render").joinpath("explorer.js").read_text(encoding="utf-8")


def _json_for_script(data) -> str:
    """JSON safe inside a ``<script>`` element (no ``</`` or ``<!--`` can end or confuse it)."""
    import json

    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def explorer_element(name: str, data: dict | None = None, src: str | None = None, method: str = "v2",
                     alpha: float | None = None, title: str | None = None, thresholds=None,
                     picture: str | None = None) -> str:
    """One explorer's HTML: the element, and its data inline (``data``) or as a lazily loaded file (``src``).

    ``method``, ``alpha`` and ``thresholds`` (v1) are where the controls start;
    ``picture`` is a URL of the resized image that replaces the data's own.
    """
    import html
    import json

    attrs = [f'data-aptviz-explorer="" data-image="{html.escape(name)}" data-method="{html.escape(method)}"']
    if alpha is not None:
        attrs.append(f'data-alpha="{float(alpha)!r}"')
    if thresholds is not None:
        attrs.append(f'data-thresholds="{html.escape(json.dumps([float(t) for t in thresholds]))}"')
    if src is not None:
        attrs.append(f'data-src="{html.escape(src)}"')
    if picture is not None:
        attrs.append(f'data-picture="{html.escape(picture)}"')
    head = f"<h3>{html.escape(title)}</h3>" if title else ""
    inline = f'<script type="application/json" data-aptviz-data="">{_json_for_script(data)}</script>' if data else ""
    status = "loading the explorer&hellip;" if src else "the explorer needs JavaScript"
    return f'<div {" ".join(attrs)}>{head}<div class="apx-body"><span class="apx-status">{status}</span></div>{inline}</div>'


def dataset_element(names: list[str] | None = None, start: dict | None = None) -> str:
    """The dataset explorer (mean and median retention over the named explorers; all of the page's by default).

    ``start`` (:func:`dataset_start`): where its controls start and the numbers it shows there before the
    images' data files are loaded (a report loads them on first use).
    """
    import html
    import json

    listed = "" if names is None else f' data-images="{html.escape(json.dumps(names))}"'
    if start is not None:
        listed += f' data-start="{html.escape(json.dumps(start, allow_nan=False))}"'
    return (f'<div data-aptviz-dataset=""{listed}><h3>All images</h3><div class="apx-body">'
            '<span class="apx-status">the dataset explorer needs JavaScript</span></div></div>')


DATA_HEAD, DATA_TAIL = "(window.aptvizPending=window.aptvizPending||[]).push(", ");\n"


def data_script(data: dict) -> str:
    """A data file for lazy loading (``<script src>`` works from file:// where fetch does not).

    It only queues its data: the explorer that inserted it registers the data
    under its own name in the script's load event (which follows the script's
    execution at once), or ``aptviz.scan()`` picks it up.
    """
    return f"{DATA_HEAD}{_json_for_script(data)}{DATA_TAIL}"


def is_data_script(content: bytes) -> bool:
    """Whether ``content`` is a data file as :func:`data_script` writes it: data only, no other script.

    A page runs such a file as script (``<script src>``): only the exact head,
    one JSON object (no ``NaN`` or ``Infinity``, UTF-8) and the exact tail pass,
    so a file put in its place cannot run code in report.html.

    Examples
    --------
    >>> is_data_script(data_script({"name": "a"}).encode()), is_data_script(b"alert(1)")
    (True, False)
    >>> is_data_script(data_script({"name": "a"}).replace("})", "}),alert(1)").encode())
    False
    """
    import json

    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if not (text.startswith(DATA_HEAD) and text.endswith(DATA_TAIL)):
        return False
    try:
        value = json.loads(text[len(DATA_HEAD) : len(text) - len(DATA_TAIL)], parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: arrays nested a million deep
        return False
    return isinstance(value, dict)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def explorer_fragment(payloads: list[dict], dataset: bool | None = None, method: str = "v2",
                      alpha: float | None = None, thresholds=None) -> str:
    """Self-contained HTML for a notebook cell or a page body: style, explorers, data and script.

    The script is idempotent: several fragments on one page share one copy.
    """
    dataset = len(payloads) > 1 if dataset is None else dataset
    parts = [f"<style>{CSS}</style>"]
    if dataset:
        parts.append(dataset_element([p["name"] for p in payloads]))
    parts += [explorer_element(p["name"], p, method=method, alpha=alpha, title=p["name"], thresholds=thresholds) for p in payloads]
    parts.append(f"<script>{explorer_script()}</script>")
    return "".join(parts)


def explorer_page(payloads: list[dict], title: str = "aptviz explorer", method: str = "v2",
                  alpha: float | None = None, thresholds=None) -> str:
    """A standalone page (no network) with one explorer per image and, for several, the dataset explorer."""
    import html

    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body style=\"margin:0 1em 2em;background:#fafafa\">"
        f"<h1 style=\"font:600 1.3em system-ui,sans-serif\">{html.escape(title)}</h1>"
        f"{explorer_fragment(payloads, method=method, alpha=alpha, thresholds=thresholds)}</body></html>"
    )
