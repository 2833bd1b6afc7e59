"""File names and other untrusted text made safe for JSON, CSV and the terminal."""

from __future__ import annotations

import os
from pathlib import Path


def text_path(path: str | Path) -> str:
    """A path as text for JSON, CSV and the terminal: valid UTF-8 whatever the OS bytes.

    File names are bytes on POSIX. Bytes that are not UTF-8 (``caf\\xe9.png``
    in Latin-1) reach Python as lone surrogates, which cannot be encoded; here
    each such byte is written as ``\\xNN`` instead, so the text stays readable
    and different names stay different.

    Examples
    --------
    >>> text_path(os.fsdecode(b"caf\\xe9.png")), text_path("café.png")
    ('caf\\\\xe9.png', 'café.png')
    """
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def clean_text(obj):
    """``obj`` with every string made encodable (lone surrogates from OS names as ``\\xNN``).

    Examples
    --------
    >>> clean_text({"error": "cannot open " + os.fsdecode(b"caf\\xe9")})
    {'error': 'cannot open caf\\\\xe9'}
    """
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
            return obj
        except UnicodeEncodeError:
            return obj.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(obj, dict):
        return {clean_text(k): clean_text(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_text(v) for v in obj]
    return obj


ERROR_CHARS = 5000
"""Error lines printed are cut to this many characters (a path is at most 4096 bytes)."""

#: C0 controls, DEL and C1 controls: what a terminal may act on (ESC sequences, OSC 52, a newline forging a line).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
#: Bidirectional controls (U+202E shows ``x\u202egnp.exe`` as ``xexe.png``) and the line and paragraph
#: separators U+2028, U+2029 (a new line to some terminals and viewers): printed as ``\uNNNN``.
_CONTROLS.update(
    {c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029)}
)


def terminal_text(text, limit: int | None = None) -> str:
    """Text safe to print: non-UTF-8 bytes and control characters as ``\\xNN`` (bidi controls and line
    separators as ``\\uNNNN``), cut to ``limit`` characters.

    File names, tar member names and Parquet text reach error lines and tables;
    raw, their control characters would drive the terminal (``\\x1b]0;...``
    sets its title, ``\\x1b[2J`` clears it, a ``\\n`` forges a line).

    Examples
    --------
    >>> terminal_text("a\\x1b[2Jb\\nc.png")
    'a\\\\x1b[2Jb\\\\x0ac.png'
    >>> terminal_text("a\\u202egnp.exe b\\u2028c")
    'a\\\\u202egnp.exe b\\\\u2028c'
    >>> terminal_text("x" * 50, limit=10)
    'xxxxxxxxxx... (50 characters)'
    """
    out = clean_text(str(text)).translate(_CONTROLS)
    if limit is not None and len(out) > limit:
        out = f"{out[:limit]}... ({len(out)} characters)"
    return out
