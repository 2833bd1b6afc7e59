"""Rendering: pictures and pages, in memory.

Heatmaps, overlays, the blend, compare.png, the batch figures and report.html
are built here as arrays, bytes or text. Nothing here writes a file.

May import: ``aptviz.compute`` and the top-level leaves.
"""
