"""Runs: many images -- discovery, the worker pool, resume, memory, batch, summaries.

``aptviz.run`` lives here (``runner``), with calibration over files and the
dataset view.

May import: ``aptviz.compute``, ``aptviz.render``, ``aptviz.output``,
``aptviz.pipeline`` and the top-level leaves.
"""
