"""Computing: every number aptviz reports, from an image file to its stats.

load -> resize -> importance maps -> selections -> token counts -> model views,
plus the calibration maths and the stats dataclasses. Pure functions over
NumPy arrays (torch only inside, on request, converted back once).

May import: the top-level leaves ``aptviz.errors``, ``aptviz._log``,
``aptviz._text``, ``aptviz._version``. Imports no other aptviz package.
"""
