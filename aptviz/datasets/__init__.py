"""Datasets: ``aptviz stats`` -- sources (files, Parquet, WebDataset tar), rows, Parquet parts, engines.

May import: ``aptviz.compute``, ``aptviz.output``, ``aptviz.runs`` and the top-level leaves.
"""
