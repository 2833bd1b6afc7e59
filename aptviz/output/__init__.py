"""Output: atomic file writes, the output folder's layout and its lock.

Every file aptviz writes goes through a temporary file and a rename
(``atomic``); ``lock`` keeps two runs out of one folder.

May import: ``aptviz.compute`` and the top-level leaves.
"""
