"""``report.html``: one self-contained page to browse a batch (SPEC §8).

No network and nothing inlined but CSS, JS and the numbers: pictures are
relative links loaded lazily, so a report of hundreds of images opens at once.

* a summary table, sortable by any column (click a header);
* one card per image: its heatmaps and a selector over its selections that
  swaps the overlay, the model view, the uniform baseline and the numbers;
* the dataset figures.

The page is built as text from the stats already in memory; the runs package writes it.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from urllib.parse import quote

from aptviz.errors import ROW_FAILED

__all__ = ["DATASET_FIGURES", "build_report", "report_cards"]

DATASET_FIGURES = (
    ("retention_vs_alpha.png", "Retention vs alpha"),
    ("psnr_vs_retention.png", "What the ViT sees: APT vs uniform at equal tokens"),
    ("fidelity_vs_tokens.png", "Which measure, at which cost: PSNR and SSIM against LLM tokens, with uniform Qwen2-VL "
     "and the Pareto front"),
    ("importance_histogram.png", "Importance distribution with thresholds"),
)

NUMBER_KEYS = (
    ("tokens", "ViT tokens"),
    ("retention", "retention"),
    ("llm_tokens", "LLM tokens"),
    ("llm_retention", "LLM retention"),
    ("target_retention", "target retention"),
    ("psnr_apt", "PSNR APT (dB)"),
    ("uniform_vit_tokens", "uniform ViT tokens"),
    ("psnr_uniform", "PSNR uniform (dB)"),
    ("ssim_apt", "SSIM APT"),
    ("ssim_uniform", "SSIM uniform"),
)

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.15em;margin:1.6em 0 .5em}
table.sum{border-collapse:collapse;font-size:12px;background:#fff}
table.sum th,table.sum td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
table.sum th{background:#eee;cursor:pointer;position:sticky;top:0;user-select:none}
table.sum th.asc::after{content:" \\25b2"}table.sum th.desc::after{content:" \\25bc"}
table.sum td.t{text-align:left}.wrap{max-height:60vh;overflow:auto;display:inline-block}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.6em 1em;content-visibility:auto;contain-intrinsic-size:auto 420px}
.card h3{margin:.2em 0 .4em;font-size:1em}.row{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.row figure{margin:0}.row figcaption{font-size:11px;color:#555}
.row img{max-height:260px;max-width:100%;image-rendering:pixelated;border:1px solid #ccc;background:#eee}
.heat img{max-height:150px}
table.num td{padding:1px 8px 1px 0;font-size:12px}.fail{color:#b00}
.figs{display:flex;flex-wrap:wrap;gap:10px}.figs figure{margin:0}
.figs img{max-width:100%;max-height:420px;border:1px solid #ccc;background:#fff}
"""

JS = """
(function(){
  var cards=document.querySelectorAll('.card[data-sel]');
  function fmt(v){if(v===null||v===undefined)return'\\u2013';if(typeof v==='number'&&!Number.isInteger(v))return v.toFixed(4);return String(v);}
  function show(card,i){
    var sels=JSON.parse(card.getAttribute('data-sel'));var s=sels[i];if(!s)return;
    ['overlay','model_view','uniform'].forEach(function(k){
      var img=card.querySelector('img[data-k="'+k+'"]');if(!img)return;
      if(s.files[k]){img.src=s.files[k];img.parentNode.style.display='';}else{img.parentNode.style.display='none';}
    });
    var rows=card.querySelectorAll('td[data-n]');
    for(var j=0;j<rows.length;j++){rows[j].textContent=fmt(s.numbers[rows[j].getAttribute('data-n')]);}
  }
  for(var c=0;c<cards.length;c++){(function(card){
    var sel=card.querySelector('select');if(!sel)return;
    sel.addEventListener('change',function(){show(card,+sel.value);});
  })(cards[c]);}
  var table=document.querySelector('table.sum');if(!table)return;
  var heads=table.querySelectorAll('th');
  for(var h=0;h<heads.length;h++){(function(th,col){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      for(var k=0;k<heads.length;k++)heads[k].classList.remove('asc','desc');
      th.classList.add(asc?'asc':'desc');
      var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[col].getAttribute('data-v'),y=b.cells[col].getAttribute('data-v');
        var nx=parseFloat(x),ny=parseFloat(y),ex=(x===''),ey=(y==='');
        if(ex!==ey)return ex?1:-1;
        var r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:(x<y?-1:x>y?1:0);
        return asc?r:-r;
      });
      var frag=document.createDocumentFragment();rows.forEach(function(r){frag.appendChild(r);});body.appendChild(frag);
    });
  })(heads[h],h);}
})();
"""


def _url(rel: str | os.PathLike) -> str:
    """A relative URL for a path under the output folder (any bytes in names survive).

    Examples
    --------
    >>> _url("a b/c#1.png")
    'a%20b/c%231.png'
    """
    # only the platform's separator becomes '/': on POSIX a backslash is a name's own byte (sent as %5C)
    return quote(os.fsencode(Path(rel).as_posix()), safe="/")


def _safe(value) -> str:
    """Printable text of a value (bytes that are not UTF-8 in file names become U+FFFD)."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _cell(value) -> str:
    if value is None:
        return '<td data-v=""></td>'
    if isinstance(value, float):
        shown = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
        return f'<td data-v="{value!r}">{shown}</td>'
    if isinstance(value, (int, bool)):
        return f'<td data-v="{value}">{value}</td>'
    text = html.escape(_safe(value))
    return f'<td class="t" data-v="{text}">{text}</td>'


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            if c == "image" and row.get("_anchor"):
                text = html.escape(_safe(v))
                cells.append(f'<td class="t" data-v="{text}"><a href="#{row["_anchor"]}">{text}</a></td>')
            else:
                cells.append(_cell(v))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="wrap"><table class="sum"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _img(src: str, caption: str, key: str | None = None) -> str:
    k = f' data-k="{key}"' if key else ""
    return (
        f'<figure><img loading="lazy" src="{html.escape(src)}" alt="{html.escape(caption)}"{k}>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _selection_label(sel: dict, measure: bool = False) -> str:
    name = sel["method"] if sel.get("alpha") is None else f"{sel['method']}  alpha={sel['alpha']:g}"
    return f"{sel['importance']}  {name}" if measure and sel.get("importance") else name


def _card(index: int, folder: str, stats: dict) -> str:
    """One image's card: heatmaps, the selection selector, overlay / model view / uniform, numbers."""
    base = folder.rstrip("/") + "/"
    files = stats.get("files", {})
    sels = []
    for sel in stats.get("selections", []):
        sf = sel.get("files", {})
        sels.append(
            {
                "files": {k: _url(base + sf[k]) for k in ("overlay", "model_view", "uniform") if sf.get(k)},
                "numbers": {k: sel.get(k) for k, _ in NUMBER_KEYS},
            }
        )
    image = stats.get("image", {})
    ow, oh = image.get("original_size", ["?", "?"])
    rw, rh = image.get("resized_size", ["?", "?"])
    title = html.escape(_safe(folder))
    parts = [
        f'<div class="card" id="img{index}" data-sel="{html.escape(json.dumps(sels))}">',
        f"<h3>{title} <small>{ow}x{oh} &rarr; {rw}x{rh}</small></h3>",
        '<div class="row heat">',
    ]
    by_measure = files.get("heatmaps_by_measure") or {None: files.get("heatmaps", {})}
    for measure, heatmaps in by_measure.items():
        for ps, rel in sorted(heatmaps.items(), key=lambda kv: int(kv[0])):
            parts.append(_img(_url(base + rel), f"{measure or 'importance'} {ps} px"))
    if files.get("blend"):
        parts.append(_img(_url(base + files["blend"]), "importance over the photo"))
    parts.append("</div>")
    if sels:
        options = "".join(
            f'<option value="{i}">{html.escape(_selection_label(s, len(by_measure) > 1))}</option>'
            for i, s in enumerate(stats["selections"])
        )
        first = sels[0]
        parts.append(f'<p>selection: <select aria-label="selection">{options}</select>')
        if files.get("compare"):
            parts.append(f' &middot; <a href="{_url(base + files["compare"])}">compare.png</a>')
        parts.append("</p><div class=\"row\">")
        for key, cap in (("overlay", "patches"), ("model_view", "what the ViT sees"), ("uniform", "uniform, same tokens")):
            src = first["files"].get(key)
            if src:
                parts.append(_img(src, cap, key))
        rows = "".join(
            f'<tr><td>{html.escape(label)}</td><td data-n="{k}">{_fmt(first["numbers"].get(k))}</td></tr>'
            for k, label in NUMBER_KEYS
        )
        parts.append(f'<table class="num">{rows}</table></div>')
    parts.append(explorer_html(folder, stats))
    parts.append("</div>")
    return "".join(parts)


def explorer_html(folder: str, stats: dict) -> str:
    """The card's explorer (docs/explorer.md), its data loaded from the image folder's explorer.js
    when the card comes into view; empty for a folder written without one.

    ``data-image`` is the folder relative to the report (the output name).
    """
    from aptviz.render.explorer import explorer_element

    files = stats.get("files") or {}
    if not files.get("explorer"):
        return ""
    base = folder.rstrip("/") + "/"
    first = (stats.get("selections") or [{}])[0]
    method = first.get("method") or "v2"
    thresholds = first.get("thresholds") if method == "v1" else None
    picture = _url(base + files["resized"]) if files.get("resized") else None
    return explorer_element(
        _safe(folder), src=_url(base + files["explorer"]), method=method, alpha=first.get("alpha"),
        thresholds=thresholds, picture=picture, title="explorer",
    )


def _explorer_parts(cards: list[tuple[str, dict]]) -> tuple[str, str, str]:
    """The explorers' style (for the head: a style element in the body restyles the whole page once more),
    the dataset view (top of the page) and the script (end), when any card has an explorer."""
    from aptviz.render.explorer import CSS as EXPLORER_CSS
    from aptviz.render.explorer import dataset_element, explorer_script

    names = [_safe(folder) for folder, stats in cards if (stats.get("files") or {}).get("explorer")]
    if not names:
        return "", "", ""
    top = f"<h2>Explore alpha over the batch</h2>{dataset_element(names)}"
    return EXPLORER_CSS, top, f"<script>{explorer_script()}</script>"


def _fmt(v) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4f}"
    return html.escape(str(v))


def build_report(
    rows: list[dict],
    cards: list[tuple[str, dict]],
    columns: list[str],
    figures: list[str] | None = None,
    title: str = "aptviz report",
) -> str:
    """The report page as a string.

    Parameters
    ----------
    rows : list of dict
        Summary rows (as summary.json).
    cards : list of (str, dict)
        ``(folder relative to the report, stats.json content)`` per image.
    columns : list of str
        Summary columns, in order.
    figures : list of str, optional
        Dataset figure file names present beside the report.
    title : str
        Page title.

    Returns
    -------
    str
        HTML.

    Examples
    --------
    >>> page = build_report([{"image": "a.png", "status": "ok"}], [], ["image", "status"])
    >>> page.startswith("<!DOCTYPE html>") and "a.png" in page
    True
    """
    anchors = {}
    for i, (_folder, stats) in enumerate(cards):
        anchors[(stats.get("image") or {}).get("path")] = f"img{i}"
    table_rows = [dict(r, _anchor=anchors.get(r.get("image"))) for r in rows]
    failed = [r for r in rows if r.get("status") == ROW_FAILED]
    figs = []
    for name, caption in DATASET_FIGURES:
        if name in (figures or []):
            figs.append(f'<figure><img loading="lazy" src="{_url(name)}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    explorer_css, explorer_top, explorer_js = _explorer_parts(cards)
    page = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(title)}</title><style>{CSS}{explorer_css}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(cards)} image(s), {len(rows)} row(s), {len(failed)} failed. Click a column header to sort.</p>",
        "<h2>Summary</h2>",
        _table(table_rows, columns),
    ]
    if figs:
        page += ["<h2>Dataset</h2>", f'<div class="figs">{"".join(figs)}</div>']
    page.append(explorer_top)
    page.append("<h2>Images</h2>")
    page += [_card(i, folder, stats) for i, (folder, stats) in enumerate(cards)]
    page.append(f"<script>{JS}</script>{explorer_js}</body></html>")
    return "\n".join(page)


def report_cards(output: str | Path, images: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The cards of :func:`build_report` from the run's images, as they are in memory.

    Parameters
    ----------
    output : str or Path
        The folder the report is in.
    images : list of (str, dict)
        ``(image folder, stats.json content)`` per image, in the summary's order.

    Returns
    -------
    list of (str, dict)
        ``(folder relative to the report, stats)``; a folder whose name the summary
        can only show escaped (no image block) gets no card.

    Examples
    --------
    >>> report_cards("out", [("out/a", {"image": {"path": "a.png"}}), ("out/b", {})])
    [('a', {'image': {'path': 'a.png'}})]
    """
    cards = []
    for folder, stats in images:
        if not isinstance(stats, dict) or not isinstance(stats.get("image"), dict):
            continue
        try:
            rel = os.path.relpath(folder, output)
        except ValueError:
            rel = folder
        cards.append((rel, stats))
    return cards
