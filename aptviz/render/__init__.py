"""Rendering: pictures and pages, in memory.

Heatmaps, overlays, the blend, compare.png, the batch figures and report.html
are built here as arrays, bytes or text, from numbers computed before
(``aptviz.compute``). Nothing here computes a number or writes a file.

May import: from ``aptviz.compute`` only types (dataclasses, enums) and
UPPER_CASE constants, and the top-level leaves.
"""
