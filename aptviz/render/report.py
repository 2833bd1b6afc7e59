"""``report.html``: one self-contained page to browse a batch (SPEC §8, §13).

No network and nothing inlined but CSS, JS and the numbers: pictures are
links relative to the report (the output folder can be moved or zipped), and
loaded lazily.

* a summary table, sortable by any column (click a header), shown a page of
  rows at a time and scrolled inside its own box;
* one card per image: its heatmaps with a colour scale, the blend, and a
  selector over its selections that swaps the overlay, the model view, the
  uniform baseline and the numbers;
* the dataset figures.

Every value read from a file (summary rows, stats.json) reaches the page in
one place only: a JSON block (``<`` ``>`` ``&`` escaped, so it cannot close
its ``<script>``) that the page's own script turns into text with
``textContent`` and attributes with ``setAttribute`` -- never into markup.
The only markup built here from file values is each card's title, through
:func:`html.escape`.

Cards are built by the page when they come near the screen (a report of
5,000 images opens at once). A card's body is the output of the functions in
``window.APTVIZ.parts`` -- ``function(data, card) -> Node or null`` -- called in
order; :func:`card_data` makes ``data``. Another part (the explorer) is added
by pushing a function before the page's script runs, and its data by passing
``card_extra`` to :func:`build_report`.

The page is built as text from the stats already in memory; the runs package writes it.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from aptviz._text import terminal_text
from aptviz.compute.video import VIDEO_EXTENSIONS
from aptviz.errors import ROW_FAILED

__all__ = [
    "COLUMN_LABELS", "build_report", "card_data", "column_label", "output_links", "report_cards",
]  # fmt: skip

FIGURE_SUFFIXES = (".png", ".svg")  # what a browser shows inline (a PDF figure is linked)

# (stats key, label, kind): kind "int", "frac" (4 decimals) or "db" (null = lossless)
NUMBER_KEYS = (
    ("tokens", "ViT tokens", "int"),
    ("retention", "ViT retention (fraction)", "frac"),
    ("llm_tokens", "LLM tokens", "int"),
    ("llm_retention", "LLM retention (fraction)", "frac"),
    ("target_retention", "target retention (fraction)", "frac"),
    ("psnr_apt", "PSNR of APT's view (dB)", "db"),
    ("ssim_apt", "SSIM of APT's view (0-1)", "ssim"),
    ("uniform_vit_tokens", "uniform at equal ViT tokens: its ViT tokens", "int"),
    ("psnr_uniform", "PSNR of uniform at equal ViT tokens (dB)", "db"),
    ("ssim_uniform", "SSIM of uniform at equal ViT tokens (0-1)", "ssim"),
    ("llm_uniform_tokens", "uniform at equal LLM tokens: its LLM tokens", "int"),
    ("psnr_uniform_llm", "PSNR of uniform at equal LLM tokens (dB)", "db"),
    ("ssim_uniform_llm", "SSIM of uniform at equal LLM tokens (0-1)", "ssim"),
)
# --ocr runs: Tesseract's character accuracy (kind "ocr": null = the resized image has no text)
OCR_NUMBER_KEYS = (
    ("ocr_apt", "OCR accuracy of APT's view (0-1)", "ocr"),
    ("ocr_uniform", "OCR accuracy of uniform, equal ViT tokens (0-1)", "ocr"),
    ("ocr_uniform_llm", "OCR accuracy of uniform, equal LLM tokens (0-1)", "ocr"),
)
NO_TEXT = "no text"
#: The baselines' PSNR columns and the token column that says the baseline exists (a null PSNR is lossless
#: only then: a selection without an LLM token count has no baseline at equal LLM tokens).
BASELINE_OF = {"psnr_uniform": "uniform_vit_tokens", "psnr_uniform_llm": "llm_uniform_tokens"}
VIEWS = (("overlay", "patches"), ("model_view", "what the ViT sees"), ("uniform", "uniform, equal ViT tokens"))
VIEW_KEYS = tuple(k for k, _ in VIEWS)
LOSSLESS = "lossless"  # the one word for a PSNR of an identical picture, as in compare.png
NOT_MEASURED = "\u2013"  # a video's PSNR: not measured (its rows and card would otherwise read "lossless")


def _is_video(row: dict) -> bool:
    """Whether a summary row is a video's (by its input's extension, docs/video.md)."""
    image = row.get("image")
    return isinstance(image, str) and Path(image).suffix.lower() in VIDEO_EXTENSIONS

COLUMN_LABELS = {
    "image": "image (its path on hover)",
    "status": "status",
    "method": "method",
    "alpha": "alpha",
    "importance": "importance measure",
    "aggregate": "aggregate",
    "resized_width": "resized width (px)",
    "resized_height": "resized height (px)",
    "tokens": "ViT tokens",
    "base_small_tokens": "plain-model ViT tokens",
    "retention": "ViT retention (fraction)",
    "target_retention": "target retention (fraction)",
    "vit_tokens": "ViT tokens",
    "llm_tokens": "LLM tokens",
    "llm_tokens_uniform": "plain-model LLM tokens",
    "llm_retention": "LLM retention (fraction)",
    "psnr_apt": "PSNR of APT's view (dB)",
    "ssim_apt": "SSIM of APT's view",
    "uniform_vit_tokens": "uniform at equal ViT tokens: ViT tokens",
    "psnr_uniform": "PSNR of uniform at equal ViT tokens (dB)",
    "ssim_uniform": "SSIM of uniform at equal ViT tokens",
    "llm_uniform_tokens": "uniform at equal LLM tokens: LLM tokens",
    "psnr_uniform_llm": "PSNR of uniform at equal LLM tokens (dB)",
    "ssim_uniform_llm": "SSIM of uniform at equal LLM tokens",
    "output": "output folder",
    "error": "error",
    **{key: label for key, label, _ in OCR_NUMBER_KEYS},
}
DB_COLUMNS = ("psnr_apt", "psnr_uniform", "psnr_uniform_llm")
#: A video's columns that are never measured (no model view, no OCR): "–", not "lossless" or "no text"
VIDEO_UNMEASURED = DB_COLUMNS + tuple(k for k, _, _ in OCR_NUMBER_KEYS)
#: The table's first columns (the rest follow in the summary's order), so the costs and the fidelity of
#: both baselines are in view on a 1400 px screen; ``vit_tokens`` repeats ``tokens`` and is left out.
TABLE_FIRST = (
    "image", "importance", "method", "alpha", "tokens", "llm_tokens", "retention", "llm_retention",
    "target_retention", "psnr_apt", "ssim_apt", "uniform_vit_tokens", "psnr_uniform", "ssim_uniform",
    "llm_uniform_tokens", "psnr_uniform_llm", "ssim_uniform_llm",
)  # fmt: skip
TABLE_LEFT_OUT = ("vit_tokens",)
#: Columns named once above the table, not in it, when every row has the same value.
TABLE_CONTEXT = ("status", "model", "importance", "aggregate", "error")
HEAT_HEIGHT = 150  # css px of a card heatmap


def column_label(name: str) -> str:
    """Header of a summary column, in words with its unit.

    Examples
    --------
    >>> column_label("tokens_28"), column_label("psnr_apt"), column_label("something_new")
    ('28 px patches (tokens)', "PSNR of APT's view (dB)", 'something new')
    """
    if name.startswith("tokens_") and name[7:].isdigit():
        return f"{name[7:]} px patches (tokens)"
    return COLUMN_LABELS.get(name, name.replace("_", " "))


CSS = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:0 12px 3em;max-width:1600px;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.15em;margin:1.6em 0 .5em}
.wrap{max-height:70vh;max-width:100%;overflow:auto;border:1px solid #ddd;background:#fff}
table.sum{border-collapse:collapse;font-size:12px}
table.sum th,table.sum td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
table.sum th{background:#eee;cursor:pointer;position:sticky;top:0;user-select:none}
table.sum th{white-space:normal;min-width:5em;vertical-align:bottom}
table.sum th.asc::after{content:" \\25b2"}table.sum th.desc::after{content:" \\25bc"}
table.sum td.t{text-align:left}.pager{margin:.4em 0;font-size:12px}.pager button{margin:0 .3em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.6em 12px}
.card{break-inside:avoid;page-break-inside:avoid}
.card:not([data-done]){min-height:420px}
.card h3{margin:.2em 0 .4em;font-size:1em;overflow-wrap:break-word}.card h3 small{font-weight:normal;color:#555}
.nw{white-space:nowrap}.same{font-size:12px;color:#555;margin:.2em 0 .4em}
.row{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
figure{margin:0;min-width:0;max-width:100%}figcaption{font-size:12px;color:#555}
img{max-width:100%;height:auto;border:1px solid #ccc;background:#eee;image-rendering:auto}
.view img{max-height:260px;width:auto}
.hmf{max-width:100%}.hm{overflow:hidden;border:1px solid #ccc;width:100%}
.hm img{height:100%;width:auto;max-width:none;max-height:none;border:0;display:block;image-rendering:pixelated}
.blend img{max-height:150px;width:auto}
.cbar{display:flex;height:150px;font-size:12px;line-height:1}
.cbar .grad{width:14px;border:1px solid #888}.cbar .ticks{position:relative;width:3.2em}
.cbar .ticks span{position:absolute;left:5px;transform:translateY(50%)}
.cbar .ticks span::before{content:"";position:absolute;left:-5px;top:50%;width:4px;border-top:1px solid #222}
.cbar .side{display:flex;flex-direction:column;justify-content:space-between;font-size:12px}
.nodata{display:inline-block;width:14px;height:12px;vertical-align:middle}
.nodata{background:repeating-linear-gradient(45deg,#aaa 0 4px,#6e6e6e 4px 8px)}
table.num td{padding:1px 8px 1px 0;font-size:12px}.fail{color:#b00}
.figs{display:flex;flex-wrap:wrap;gap:10px}
.figs img{max-height:420px;width:auto;background:#fff}
@media print{.card:not([data-done]){min-height:0}.wrap{max-height:none;overflow:visible}}
"""

JS = r"""
(function(){
'use strict';
var D=JSON.parse(document.getElementById('aptviz-data').textContent);
var A=window.APTVIZ=window.APTVIZ||{};A.data=D;
function el(tag,attrs,text){var e=document.createElement(tag);
  for(var k in (attrs||{}))if(attrs[k]!==null&&attrs[k]!==undefined)e.setAttribute(k,attrs[k]);
  if(text!==undefined&&text!==null)e.textContent=String(text);return e;}
A.el=el;
function num(v,kind){
  if(v===null||v===undefined)return kind==='db'?D.lossless:kind==='ocr'?D.noText:'\u2013';
  if(typeof v!=='number')return String(v);
  if(kind==='frac')return v.toFixed(4);if(kind==='db')return v.toFixed(2);if(kind==='ssim'||kind==='ocr')return v.toFixed(3);
  return Number.isInteger(v)?String(v):String(Number(v.toPrecision(4)));}
function figure(cls,caption,src,key){
  var f=el('figure',{'class':cls});var img=el('img',{loading:'lazy',alt:caption,src:src,'data-k':key});
  f.appendChild(img);f.appendChild(el('figcaption',null,caption));return {fig:f,img:img};}
function colorbar(b){
  var box=el('div',{'class':'cbar',role:'img','aria-label':'colour scale, '+b.unit});
  var g=el('div',{'class':'grad'});g.style.background=D.gradient;box.appendChild(g);
  var t=el('div',{'class':'ticks'});
  b.ticks.forEach(function(k){var s=el('span',null,k[1]);s.style.bottom=(100*k[0])+'%';t.appendChild(s);});
  box.appendChild(t);var side=el('div',{'class':'side'});side.appendChild(el('span',null,b.unit));
  if(b.pad){var p=el('span');p.appendChild(el('span',{'class':'nodata'}));
    p.appendChild(document.createTextNode(' no data'));side.appendChild(p);}
  box.appendChild(side);return box;}
function url(d,rel){return rel?d.base+rel:null;}
A.url=url;
function heatPart(d){
  if(!d.heat.length&&!d.blend)return null;var row=el('div',{'class':'row heat'});
  d.heat.forEach(function(h){
    var f=el('figure',{'class':'hmf'});var box=el('div',{'class':'hm'});
    if(d.aspect){box.style.aspectRatio=d.aspect[0]+' / '+d.aspect[1];
      f.style.width=Math.round(D.heatHeight*d.aspect[0]/d.aspect[1])+'px';}
    box.appendChild(el('img',{loading:'lazy',src:url(d,h[1]),alt:h[0]}));f.appendChild(box);
    f.appendChild(el('figcaption',null,h[0]));row.appendChild(f);});
  if(d.bar)row.appendChild(colorbar(d.bar));
  if(d.blend)row.appendChild(figure('blend','importance over the photo',url(d,d.blend)).fig);
  return row;}
function selectionPart(d){
  if(!d.sels.length)return null;var wrap=el('div');var p=el('p',null,'selection: ');
  var sel=el('select',{'aria-label':'selection'});
  d.sels.forEach(function(s,i){sel.appendChild(el('option',{value:String(i)},s.label));});
  p.appendChild(sel);
  if(d.compare){p.appendChild(document.createTextNode(' \u00b7 '));
    p.appendChild(el('a',{href:url(d,d.compare)},'comparison figure'));}
  p.appendChild(document.createTextNode(' \u00b7 '));p.appendChild(el('a',{href:d.base},'all files'));
  wrap.appendChild(p);var row=el('div',{'class':'row'});var figs={};
  D.views.forEach(function(v){var f=figure('view',v[1],null,v[0]);figs[v[0]]=f;row.appendChild(f.fig);});
  var tbl=el('table',{'class':'num'});var cells=[];
  D.numbers.forEach(function(n,j){var tr=el('tr');tr.appendChild(el('td',null,n[1]));
    var td=el('td',{'data-n':n[0]});cells.push([td,j,n[2]]);tr.appendChild(td);tbl.appendChild(tr);});
  row.appendChild(tbl);
  function show(i){var s=d.sels[i];if(!s)return;
    D.views.forEach(function(v,j){var f=figs[v[0]],src=url(d,s.files[j]);
      if(src){f.img.setAttribute('src',src);f.fig.style.display='';}else{f.fig.style.display='none';}});
    cells.forEach(function(c){c[0].textContent=num(s.numbers[c[1]],c[2]);});}
  sel.addEventListener('change',function(){show(+sel.value);});show(0);wrap.appendChild(row);return wrap;}
A.parts=[heatPart,selectionPart].concat(A.parts||[]);
function S(i){return i===null||i===undefined?null:D.strings[i];}
function restore(d){
  d.heat=d.heat.map(function(h){return [S(h[0]),S(h[1])];});d.blend=S(d.blend);d.compare=S(d.compare);
  d.sels.forEach(function(s){s.label=S(s.label);s.files=s.files.map(S);});return d;}
function fill(card){
  if(card.hasAttribute('data-done'))return;card.setAttribute('data-done','');
  var d=D.cards[+card.getAttribute('data-i')];var body=card.querySelector('.body');if(!d||!body)return;
  restore(d);
  A.parts.forEach(function(part){var n=part(d,card);if(n)body.appendChild(n);});}
A.fill=fill;
var cards=document.querySelectorAll('.card[data-i]');
function fillAll(){for(var i=0;i<cards.length;i++)fill(cards[i]);}
if('IntersectionObserver' in window){
  var io=new IntersectionObserver(function(es){
    es.forEach(function(e){if(e.isIntersecting){io.unobserve(e.target);fill(e.target);}});},{rootMargin:'1200px 0px'});
  for(var c=0;c<cards.length;c++)io.observe(cards[c]);
}else fillAll();
window.addEventListener('beforeprint',fillAll);
function fillHash(){var t=location.hash&&document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if(t&&t.hasAttribute('data-i')){fill(t);t.scrollIntoView();}}
window.addEventListener('hashchange',fillHash);fillHash();
// the summary table: sorted over all rows, shown a page at a time
var T=D.table,host=document.getElementById('summary');if(!host||!T.rows.length)return;
Object.keys(T.dicts).forEach(function(c){var words=T.dicts[c];c=+c;
  T.rows.forEach(function(r){if(r[c]!==null)r[c]=words[r[c]];});});
var PAGE=D.page,page=0,order=T.rows.map(function(_,i){return i;}),sortCol=-1,asc=true;
var box=el('div',{'class':'wrap'}),table=el('table',{'class':'sum'}),thead=el('thead'),hr=el('tr'),tbody=el('tbody');
var pager=el('div',{'class':'pager'}),info=el('span');
var prev=el('button',{type:'button'},'previous'),next=el('button',{type:'button'},'next');
T.labels.forEach(function(label,i){var th=el('th',{title:T.columns[i]},label);hr.appendChild(th);
  th.addEventListener('click',function(){asc=(sortCol===i)?!asc:true;sortCol=i;sort();});});
thead.appendChild(hr);table.appendChild(thead);table.appendChild(tbody);box.appendChild(table);
pager.appendChild(info);pager.appendChild(prev);pager.appendChild(next);
if(T.same.length)host.appendChild(el('p',{'class':'same'},'Same in every row: '+T.same.map(function(s){
  return s[0]+' '+(s[1]===''?'(none)':s[1]);}).join(' \u00b7 ')));
host.appendChild(pager);host.appendChild(box);
function empty(v){return v===null||v===undefined||v==='';}
function cmp(x,y){var ex=empty(x),ey=empty(y);
  if(ex||ey)return ex===ey?0:(ex?1:-1);
  if(typeof x==='number'&&typeof y==='number')return x-y;x=String(x);y=String(y);return x<y?-1:x>y?1:0;}
function sort(){var ths=hr.children;for(var k=0;k<ths.length;k++)ths[k].className='';
  ths[sortCol].className=asc?'asc':'desc';
  order.sort(function(a,b){var x=T.rows[a][sortCol],y=T.rows[b][sortCol],r=cmp(x,y);if(!r)return a-b;
    return (empty(x)||empty(y))?r:(asc?r:-r);});
  page=0;draw();}
function fileName(v){var s=String(v),i=s.lastIndexOf('/');return i>=0&&i<s.length-1?s.slice(i+1):s;}
function cell(row,i){var v=row[i],name=T.columns[i],td;
  if(name===T.link&&row[T.columns.length]!==null){td=el('td',{'class':'t'});
    td.appendChild(el('a',{href:'#img'+row[T.columns.length],title:v},fileName(v)));return td;}
  if(name===T.link&&typeof v==='string')return el('td',{'class':'t',title:v},fileName(v));
  if(name==='output'&&typeof v==='string'){td=el('td',{'class':'t'});td.appendChild(el('a',{href:v},v));return td;}
  if(typeof v==='number')return el('td',null,num(v,'table'));
  if((v===null||v===undefined)&&T.db.indexOf(name)>=0&&(T.statusCol>=0?row[T.statusCol]:T.status)==='ok')
    return el('td',{'class':'t'},D.lossless);
  td=el('td',{'class':'t'},v===null||v===undefined?'':v);if(name==='error'&&v)td.className='t fail';return td;}
function draw(){var n=order.length,start=page*PAGE,stop=Math.min(n,start+PAGE),frag=document.createDocumentFragment();
  for(var r=start;r<stop;r++){var row=T.rows[order[r]],tr=el('tr');
    for(var i=0;i<T.columns.length;i++)tr.appendChild(cell(row,i));frag.appendChild(tr);}
  tbody.textContent='';tbody.appendChild(frag);
  info.textContent='rows '+(n?start+1:0)+'\u2013'+stop+' of '+n;prev.disabled=page===0;next.disabled=stop>=n;
  pager.style.display=n>PAGE?'':'none';}
prev.addEventListener('click',function(){if(page>0){page--;draw();}});
next.addEventListener('click',function(){if((page+1)*PAGE<order.length){page++;draw();}});
draw();
})();
"""


def _url(rel: str | os.PathLike) -> str:
    """A relative URL for a path under the output folder (any bytes in names survive).

    A backslash is a character of a POSIX file name, not a separator: it is
    escaped like any other (only the platform's own separator becomes ``/``).

    Examples
    --------
    >>> _url("a b/c#1.png"), _url("back\\\\slash.png")
    ('a%20b/c%231.png', 'back%5Cslash.png')
    """
    # only the platform's separator becomes '/': on POSIX a backslash is a name's own byte (sent as %5C)
    return quote(os.fsencode(Path(rel).as_posix()), safe="/")


def _safe(value) -> str:
    """Printable text of a value (bytes that are not UTF-8 in file names become U+FFFD)."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _plain(value):
    """A value as JSON the page can take: finite numbers, text, None (anything else as text).

    Text is shown as the terminal shows it: a bidi control or a line separator in a file name as ``\\uNNNN``
    (raw, U+202E in ``x<U+202E>gnp.exe`` would show it as ``xexe.png``), a control character as ``\\xNN``.

    Examples
    --------
    >>> _plain("x\u202egnp.exe"), _plain(float("nan")), _plain(3)
    ('x\\\\u202egnp.exe', None, 3)
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return terminal_text(_safe(value))


def _shown(value):
    """A card number to 6 significant digits (shown with at most 4 decimals; the table keeps every digit).

    Examples
    --------
    >>> _shown(0.07954545454545454), _shown(704), _shown(None)
    (0.0795455, 704, None)
    """
    value = _plain(value)
    return float(f"{value:.6g}") if isinstance(value, float) else value


def _script_json(data) -> str:
    """``data`` as JSON that cannot end its ``<script>`` element or start markup.

    Examples
    --------
    >>> _script_json({"a": "</script><b>&"})
    '{"a":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e\\\\u0026"}'
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _size(value) -> tuple[int, int] | None:
    """``[W, H]`` from stats.json when both are positive integers, else None."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        return int(value[0]), int(value[1])
    return None


def _selection_label(sel: dict, measure: bool = False) -> str:
    """``"budget  alpha=0.3"``: the method, alpha when it has one, and the measure first when asked.

    Examples
    --------
    >>> _selection_label({"method": "v1", "alpha": None}), _selection_label({"method": "v2", "alpha": 1.2})
    ('v1', 'v2  alpha=1.2')
    >>> _selection_label({"method": "v1", "importance": "laplacian"}, measure=True)
    'laplacian  v1'
    """
    name = _safe(sel.get("method"))
    alpha = sel.get("alpha")
    if alpha is not None:
        number = _number(alpha)
        name = f"{name}  alpha={number:g}" if number is not None else f"{name}  alpha={_safe(alpha)}"
    return f"{_safe(sel['importance'])}  {name}" if measure and sel.get("importance") else name


def _colour_bar(scale) -> dict | None:
    """The card heatmaps' colour scale (an :class:`aptviz.compute.heatmaps.CardScale`) as the page draws it:
    range, ticks at their place along it, unit, and whether PAD cells exist."""
    from aptviz.render.pictures import nice_ticks

    if scale is None:
        return None
    lo, hi = scale.lo, scale.hi
    span = hi - lo
    ticks = [[round((t - lo) / span, 4) if span > 0 else 0.0, f"{t:g}"] for t in nice_ticks(lo, hi)]
    return {"lo": lo, "hi": hi, "ticks": ticks, "unit": scale.unit, "pad": scale.pad}


def number_keys(cards) -> tuple:
    """The card numbers: :data:`NUMBER_KEYS`, and :data:`OCR_NUMBER_KEYS` when some image ran ``--ocr``."""
    ocr = any(isinstance(s.get("params"), dict) and s["params"].get("ocr") is True for _, s in cards)
    return NUMBER_KEYS + (OCR_NUMBER_KEYS if ocr else ())


def card_data(folder: str, stats: dict, keys: tuple = NUMBER_KEYS, scale=None) -> dict:
    """What the page needs to build one image's card (every link relative to the report).

    Parameters
    ----------
    folder : str
        The image folder relative to the report.
    stats : dict
        Its stats.json content (any value may be hostile: only numbers,
        text and links under ``folder`` come out).
    keys : tuple
        The numbers shown per selection (:func:`number_keys`).
    scale : aptviz.compute.heatmaps.CardScale, optional
        The colour scale of its heatmaps (:func:`aptviz.compute.heatmaps.card_scale`); None: none drawn.

    Returns
    -------
    dict
        ``base`` (the folder's URL; every other link is relative to it),
        ``heat`` (``[caption, link]`` per scale), ``blend``, ``compare``,
        ``aspect`` (``[W, H]`` of the resized image), ``bar`` (the colour
        scale), ``sels`` (``label``, ``files`` as
        ``[overlay, model view, uniform]``, ``numbers`` in the order of
        ``keys`` (:func:`number_keys`).

    Examples
    --------
    >>> d = card_data("a b", {"files": {"compare": "compare.png"}, "selections": []})
    >>> d["base"], d["compare"]
    ('a%20b/', 'compare.png')
    """

    def link(rel):
        return _url(rel) if _in_folder(rel) else None  # the image folder's own files only

    files = stats.get("files") if isinstance(stats.get("files"), dict) else {}
    by_measure = files.get("heatmaps_by_measure")
    several = isinstance(by_measure, dict) and len(by_measure) > 1  # a run of several measures: each named
    if not several:
        by_measure = {"importance": files.get("heatmaps")}
    heat = []
    for measure, heatmaps in by_measure.items():
        if isinstance(heatmaps, dict):
            ordered = sorted(heatmaps.items(), key=lambda kv: (len(str(kv[0])), str(kv[0])))  # 14, 28, 56
            heat += [[f"{_safe(measure)}, {_safe(ps)} px", link(rel)] for ps, rel in ordered if link(rel)]
    video = "timeline" in files  # a video (docs/video.md): its contact sheet; no model view, so no PSNR
    sels = []
    for sel in stats.get("selections") or []:
        if not isinstance(sel, dict):
            continue
        sf = sel.get("files") if isinstance(sel.get("files"), dict) else {}
        sels.append({
            "label": _selection_label(sel, several),
            "files": [link(sf.get("contact_sheet" if video and k == "overlay" else k)) for k in VIEW_KEYS],
            "numbers": [NOT_MEASURED if video and kind in ("db", "ocr") and sel.get(k) is None else _card_number(sel, k)
                        for k, _, kind in keys],
        })  # fmt: skip
    image = stats.get("image") if isinstance(stats.get("image"), dict) else {}
    return {
        "base": _url(folder.rstrip("/")) + "/",
        "heat": heat,
        "blend": link(files.get("blend")),
        "compare": link(files.get("compare")),
        "aspect": _size(image.get("resized_size")),
        "bar": _colour_bar(scale),
        "sels": sels,
    }


def _card_number(sel: dict, key: str):
    """A card's number; a baseline's PSNR is "-" (not "lossless") when the selection has no such baseline."""
    if key in BASELINE_OF and sel.get(BASELINE_OF[key]) is None:
        return "\u2013"
    return _shown(sel.get(key))


def _card_head(index: int, stats: dict, extra: str = "") -> str:
    """A card's placeholder: its title (the input path as given, sizes), an empty body, then ``extra`` markup
    (the explorer, which loads its own data when it comes into view)."""
    image = stats.get("image") if isinstance(stats.get("image"), dict) else {}
    sizes = [_size(image.get(k)) for k in ("original_size", "resized_size")]
    shown = " &rarr; ".join(f'<span class="nw">{w}&times;{h}&nbsp;px</span>' for w, h in (s for s in sizes if s))
    # a long path wraps after a "/" (or at a space), never inside a name that fits the line; U+202E and the like
    # are shown escaped (they would show x\u202egnp.exe as xexe.png)
    title = "/<wbr>".join(html.escape(part) for part in terminal_text(_safe(image.get("path", ""))).split("/"))
    return (f'<div class="card" id="img{index}" data-i="{index}"><h3>{title} <small>{shown}</small></h3>'
            f'<div class="body"></div>{extra}</div>')  # fmt: skip


def _gradient() -> str:
    """The inferno colormap as a CSS gradient, bottom (low) to top (high)."""
    from aptviz.render.pictures import colormap_lut

    lut = colormap_lut()
    stops = [f"#{bytes(lut[i]).hex()} {100 * i / 255:.1f}%" for i in (*range(0, 256, 32), 255)]
    return f"linear-gradient(to top, {', '.join(stops)})"


def table_columns(rows: list[dict], columns: list[str]) -> tuple[list[str], list[tuple[str, object]]]:
    """The report table's columns, and the context columns left out because every row has one value.

    :data:`TABLE_FIRST` first, then the rest in the summary's order, without
    :data:`TABLE_LEFT_OUT`; a :data:`TABLE_CONTEXT` column with one value in
    every row (of two or more) is named once above the table instead.

    Examples
    --------
    >>> rows = [{"image": "a.png", "status": "ok", "model": "m", "tokens": 3, "vit_tokens": 3, "resized_width": 9},
    ...         {"image": "b.png", "status": "ok", "model": "m", "tokens": 4, "vit_tokens": 4, "resized_width": 9}]
    >>> table_columns(rows, ["image", "status", "model", "resized_width", "tokens", "vit_tokens"])
    (['image', 'tokens', 'resized_width'], [('status', 'ok'), ('model', 'm')])
    """
    present = [c for c in columns if c not in TABLE_LEFT_OUT]
    ordered = [c for c in TABLE_FIRST if c in present] + [c for c in present if c not in TABLE_FIRST]
    same = []
    if len(rows) > 1:
        for c in TABLE_CONTEXT:
            values = {json.dumps(_plain(r.get(c))) for r in rows}
            if c in ordered and len(values) == 1:
                same.append((c, _plain(rows[0].get(c))))
    left = {c for c, _ in same}
    return [c for c in ordered if c not in left], same


def _table_data(rows: list[dict], columns: list[str], anchors: dict, output_links: dict) -> dict:
    """The summary table as columns, labels and row arrays (the card index of each row appended)."""
    columns, same = table_columns(rows, columns)
    table_rows = []
    for row in rows:
        values = []
        for c in columns:
            v = row.get(c)
            if c == "output" and isinstance(v, str):
                v = output_links.get(v, _safe(v))
            if c in BASELINE_OF and v is None and row.get(BASELINE_OF[c]) is None:
                v = ""  # no such baseline (not a lossless one)
            values.append(NOT_MEASURED if v is None and c in VIDEO_UNMEASURED and _is_video(row) else _plain(v))
        image = row.get("image")
        values.append(anchors.get(image) if isinstance(image, str) else None)
        table_rows.append(values)
    return {
        "columns": list(columns),
        "labels": [column_label(c) for c in columns],
        "same": [[column_label(c), "" if v is None else v] for c, v in same],
        "dicts": _dictionary_encode(table_rows, len(columns)),
        "rows": table_rows,
        "link": "image",
        "db": list(DB_COLUMNS),
        "statusCol": columns.index("status") if "status" in columns else -1,
        "status": dict(same).get("status"),  # every row's, when the column is named above the table instead
    }


def _interned(card: dict, strings: dict[str, int]) -> dict:
    """``card`` with its links and labels replaced by indices into ``strings`` (shared by every card).

    Images of one batch share their relative file names and labels: each is sent once.
    The page restores them before a card's parts see the data.
    """

    def ref(text):
        return None if text is None else strings.setdefault(text, len(strings))

    card["heat"] = [[ref(caption), ref(link)] for caption, link in card["heat"]]
    card["blend"], card["compare"] = ref(card["blend"]), ref(card["compare"])
    for sel in card["sels"]:
        sel["label"] = ref(sel["label"])
        sel["files"] = [ref(f) for f in sel["files"]]
    return card


def _dictionary_encode(rows: list[list], ncols: int) -> dict:
    """Replace the text of repetitive text columns by indices into one list per column (a smaller page).

    Returns ``{column index: [distinct texts]}``; the page decodes it.

    Examples
    --------
    >>> rows = [["a.png", 1], ["a.png", 2], ["b.png", 3], ["a.png", 4]]
    >>> _dictionary_encode(rows, 2), rows
    ({0: ['a.png', 'b.png']}, [[0, 1], [0, 2], [1, 3], [0, 4]])
    """
    out = {}
    for c in range(ncols):
        values = [r[c] for r in rows]
        texts = [v for v in values if v is not None]
        if not texts or not all(isinstance(v, str) for v in texts):
            continue
        distinct = list(dict.fromkeys(texts))
        if len(distinct) * 2 > len(texts):
            continue
        index = {v: i for i, v in enumerate(distinct)}
        for r in rows:
            if r[c] is not None:
                r[c] = index[r[c]]
        out[c] = distinct
    return out


def _page_data(rows, cards, columns, card_extra, output_links: dict, scales: list | None = None) -> dict:
    """Everything the page's script reads: the table, the cards and the constants."""
    anchors: dict = {}
    for i, (_folder, stats) in enumerate(cards):
        path = (stats.get("image") or {}).get("path")
        if isinstance(path, str):
            anchors.setdefault(path, i)
    data_cards = []
    strings: dict[str, int] = {}
    keys = number_keys(cards)
    for i, (folder, stats) in enumerate(cards):
        data = _interned(card_data(folder, stats, keys, scales[i] if scales else None), strings)
        if card_extra is not None:
            data.update(card_extra(folder, stats))
        data_cards.append(data)
    data = {
        "strings": list(strings),
        "table": _table_data(rows, columns, anchors, output_links),
        "cards": data_cards,
        "numbers": [list(n) for n in keys],
        "views": [list(v) for v in VIEWS],
        "lossless": LOSSLESS,
        **({"noText": NO_TEXT} if len(keys) > len(NUMBER_KEYS) else {}),
        "gradient": _gradient(),
        "heatHeight": HEAT_HEIGHT,
        "page": 100,
    }
    return data

def explorer_html(folder: str, stats: dict) -> str:
    """The card's explorer (docs/explorer.md), its data loaded from the image folder's explorer.js
    when the card comes into view; empty for a folder written without one.

    ``data-image`` is the folder relative to the report (the output name).
    """
    from aptviz.render.explorer import explorer_element

    files = stats.get("files") if isinstance(stats.get("files"), dict) else {}
    if not _in_folder(files.get("explorer")):  # a script: never one from outside the image folder
        return ""
    base = folder.rstrip("/") + "/"
    first = (stats.get("selections") or [{}])[0]
    first = first if isinstance(first, dict) else {}
    method = _safe(first.get("method") or "v2")
    thresholds = first.get("thresholds") if method == "v1" else None
    resized = files.get("resized")
    picture = _url(base + resized) if _in_folder(resized) else None
    try:  # values from a file: anything odd gives no explorer rather than no report
        return explorer_element(
            _safe(folder), src=_url(base + files["explorer"]), method=method, alpha=_number(first.get("alpha")),
            thresholds=thresholds, picture=picture, title="explorer",
        )
    except (TypeError, ValueError):
        return ""


def _in_folder(rel) -> bool:
    """Whether ``rel`` (a link from stats.json) is a file path inside its image folder.

    Examples
    --------
    >>> [_in_folder(r) for r in ("explorer.js", "a/b.png", "../../evil/x.js", "/x.js", "a\\\\b.js", "a//b", "")]
    [True, True, False, False, False, False, False]
    """
    if not isinstance(rel, str) or not rel or "\\" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def _explorer_parts(cards: list[tuple[str, dict]], start: dict | None = None) -> tuple[str, str, str]:
    """The explorers' style (for the head: a style element in the body restyles the whole page once more),
    the dataset view (top of the page) and the script (end), when any card has an explorer."""
    from aptviz.render.explorer import CSS as EXPLORER_CSS
    from aptviz.render.explorer import dataset_element, explorer_script

    shown = [(_safe(folder), stats) for folder, stats in cards if explorer_html(folder, stats)]
    names = [name for name, _ in shown]
    if not names:
        return "", "", ""
    top = f"<h2>Explore alpha over the batch</h2>{dataset_element(names, start)}"
    return EXPLORER_CSS, top, f"<script>{explorer_script()}</script>"




def build_report(
    rows: list[dict],
    cards: list[tuple[str, dict]],
    columns: list[str],
    figures: list[tuple[str, str]] | None = None,
    title: str = "aptviz report",
    card_extra: Callable[[str, dict], dict] | None = None,
    scripts: list[str] | None = None,
    output_links: dict | None = None,
    dataset_start: dict | None = None,
    card_scales: list | None = None,
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
    figures : list of (str, str), optional
        ``(file name, caption)`` of the dataset figures present beside the
        report, in the order shown (``aptviz.output.layout.BATCH_FIGURES``).
    title : str
        Page title.
    card_extra : callable, optional
        ``(folder, stats) -> dict`` merged into each card's data (for an
        added card part).
    scripts : list of str, optional
        JavaScript run before the page's own (to push card parts).
    output_links : dict, optional
        ``{row "output" value: URL relative to the report}``.
    dataset_start : dict, optional
        Where the dataset explorer starts and the numbers it shows before it
        loads the images' data (:func:`aptviz.compute.explorer_data.dataset_start`).
    card_scales : list, optional
        Per card, the colour scale of its heatmaps (:func:`aptviz.compute.heatmaps.card_scale`, None: no
        scale); none drawn when not given.

    Returns
    -------
    str
        HTML.

    Examples
    --------
    >>> page = build_report([{"image": "a.png", "status": "ok"}], [], ["image", "status"])
    >>> page.startswith("<!DOCTYPE html>") and "a.png" in page and 'name="viewport"' in page
    True
    """
    failed = sum(1 for r in rows if r.get("status") == ROW_FAILED)
    data = _page_data(rows, cards, columns, card_extra, output_links or {}, card_scales)
    explorer_css, explorer_top, explorer_js = _explorer_parts(cards, dataset_start)
    page = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}{explorer_css}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(cards)} image(s), {len(rows)} row(s), {failed} failed. Click a column header to sort.</p>",
        '<h2>Summary</h2><div id="summary"></div>',
    ]
    figs = _figures_html(figures or [])
    if figs:
        page += ["<h2>Dataset</h2>", f'<div class="figs">{figs}</div>']
    page += [explorer_top, "<h2>Images</h2>"]
    page += [_card_head(i, stats, explorer_html(folder, stats)) for i, (folder, stats) in enumerate(cards)]
    page.append(f'<script type="application/json" id="aptviz-data">{_script_json(data)}</script>')
    page += [f"<script>{s}</script>" for s in scripts or []]
    page.append(f"<script>{JS}</script>{explorer_js}</body></html>")
    return "\n".join(page)


def _figures_html(figures: list[tuple[str, str]]) -> str:
    """The dataset figures present (our own file names, with their captions), shown inline or linked (PDF)."""
    parts = []
    for name, caption in figures:
        cap = html.escape(caption)
        if Path(name).suffix in FIGURE_SUFFIXES:
            img = f'<img loading="lazy" src="{_url(name)}" alt="{cap}">'
            parts.append(f"<figure>{img}<figcaption>{cap}</figcaption></figure>")
        else:
            parts.append(f'<p><a href="{_url(name)}">{cap} ({html.escape(Path(name).suffix[1:].upper())})</a></p>')
    return "".join(parts)


def output_links(output: str | Path, rows: list[dict]) -> dict[str, str]:
    """``{row "output" folder: its URL relative to the report}`` for the summary table.

    Examples
    --------
    >>> output_links("out", [{"output": "out/a b"}, {"output": None}])
    {'out/a b': 'a%20b/'}
    """
    links = {}
    for row in rows:
        folder = row.get("output")
        if isinstance(folder, str) and folder and folder not in links:
            try:
                rel = os.path.relpath(folder, output)
            except ValueError:
                rel = folder
            links[folder] = _url(rel.rstrip("/")) + "/"
    return links


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
