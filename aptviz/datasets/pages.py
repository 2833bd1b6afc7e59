"""The memory a Parquet column chunk needs to be read, from its page headers.

Arrow reads a column one page at a time, and a page whole: its compressed
bytes and its decompressed values are held together, and a dictionary page
(Arrow writes every value of the first write batch -- up to 1024 images --
into it) stays held while the data pages refer to it. A row group of images
written as one big page therefore needs twice its size in memory, however
few rows a reader asks for. The Parquet footer does not give page sizes;
each page's header (a Thrift compact struct in front of the page) does.
:func:`read_bytes` walks the headers of a column chunk -- a few bytes per
page, no values -- so a worker can refuse a page that does not fit its
memory budget before reading it.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["page_sizes", "read_bytes"]

DICTIONARY_PAGE = 2
"""PageHeader.type of a dictionary page (parquet.thrift ``PageType``)."""


class _Compact:
    """Just enough of Thrift's compact protocol to read a PageHeader's first fields and skip the rest."""

    def __init__(self, f, chunk: int = 1 << 16):
        self.f, self.chunk, self.buf, self.at, self.used = f, chunk, b"", 0, 0

    def byte(self) -> int:
        if self.at >= len(self.buf):
            self.buf, self.at = self.f.read(self.chunk), 0
            if not self.buf:
                raise EOFError("page header runs past the file's end")
        self.at += 1
        self.used += 1
        return self.buf[self.at - 1]

    def skip_bytes(self, n: int) -> None:
        for _ in range(n):
            self.byte()

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7
            if shift > 70:
                raise ValueError("bad varint in a page header")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def skip(self, ctype: int, depth: int = 0) -> None:
        """Skip one value of compact type ``ctype``."""
        if depth > 32:
            raise ValueError("page header nested too deep")
        if ctype in (1, 2):  # bool, in the field header
            return
        if ctype == 3:
            self.byte()
        elif ctype in (4, 5, 6):
            self.varint()
        elif ctype == 7:
            self.skip_bytes(8)
        elif ctype == 8:
            self.skip_bytes(self.varint())
        elif ctype in (9, 10):
            head = self.byte()
            size, etype = head >> 4, head & 0x0F
            size = self.varint() if size == 15 else size
            for _ in range(size):
                self.skip(3 if etype in (1, 2) else etype, depth + 1)  # bools in lists are a byte each
        elif ctype == 11:
            size = self.varint()
            types = self.byte() if size else 0
            for _ in range(size):
                self.skip(types >> 4, depth + 1)
                self.skip(types & 0x0F, depth + 1)
        elif ctype == 12:
            self.fields(lambda fid, t: self.skip(t, depth + 1))
        else:
            raise ValueError(f"unknown compact type {ctype} in a page header")

    def fields(self, on_field) -> None:
        """Call ``on_field(id, type)`` for each field of a struct (it reads or skips the value)."""
        last = 0
        while True:
            head = self.byte()
            if head == 0:
                return
            delta, ctype = head >> 4, head & 0x0F
            last = last + delta if delta else self.zigzag()
            on_field(last, ctype)


def _page_header(reader: _Compact) -> tuple[int, int, int]:
    """``(type, uncompressed size, compressed size)`` of the PageHeader at the reader's position."""
    found = {}

    def on_field(fid: int, ctype: int) -> None:
        if fid in (1, 2, 3) and ctype == 5:
            found[fid] = reader.zigzag()
        else:
            reader.skip(ctype)

    reader.fields(on_field)
    if len(found) != 3 or found[2] < 0 or found[3] < 0:
        raise ValueError("page header without its type and sizes")
    return found[1], found[2], found[3]


def page_sizes(f, start: int, length: int, max_pages: int = 1 << 20) -> list[tuple[int, int, int]]:
    """``(type, uncompressed, compressed)`` of every page of the column chunk at ``[start, start + length)``.

    Raises ValueError or EOFError when the headers are not what they should be.
    """
    pages = []
    at, end = start, start + length
    while at < end and len(pages) < max_pages:
        f.seek(at)
        reader = _Compact(f, chunk=4096)
        kind, uncompressed, compressed = _page_header(reader)
        pages.append((kind, uncompressed, compressed))
        at += reader.used + compressed
    return pages


def _chunk_bytes(pages: list[tuple[int, int, int]]) -> int:
    """Peak bytes to read one column chunk: the largest page, compressed and decompressed at once, beside
    the decompressed dictionary (held while the data pages are read)."""
    dictionary = sum(u for kind, u, _ in pages if kind == DICTIONARY_PAGE)
    biggest = max((u + c for _, u, c in pages), default=0)
    return max(biggest, dictionary + max((u + c for kind, u, c in pages if kind != DICTIONARY_PAGE), default=0))


@lru_cache(maxsize=64)
def read_bytes(path: str, row_group: int, column: str) -> int | None:
    """The memory Arrow needs to read ``column`` (all its leaves) of one row group, or None when unknown.

    Every task of a row group asks: the answer is kept (the file does not
    change during a run; its size and mtime are part of the key of its rows).

    Examples
    --------
    >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> path = tempfile.mkdtemp() + "/t.parquet"
    >>> pq.write_table(pa.table({"image": [b"x" * 100_000] * 3}), path, compression="none", use_dictionary=False)
    >>> read_bytes(path, 0, "image") > 2 * 300_000
    True
    """
    from aptviz.datasets.parquet import require_pyarrow

    pq = require_pyarrow().parquet
    try:
        meta = pq.ParquetFile(path).metadata.row_group(row_group)
        total = 0
        with open(path, "rb") as f:
            for i in range(meta.num_columns):
                chunk = meta.column(i)
                if chunk.path_in_schema != column and not chunk.path_in_schema.startswith(column + "."):
                    continue
                start = chunk.data_page_offset
                if chunk.has_dictionary_page and 0 < (chunk.dictionary_page_offset or 0) < start:
                    start = chunk.dictionary_page_offset
                total += _chunk_bytes(page_sizes(f, start, chunk.total_compressed_size))
        return total or None
    except Exception:  # a file the headers cannot be walked in: Arrow's own read says what is wrong
        return None
