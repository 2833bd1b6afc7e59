"""Labels say which cost: no "same tokens" or "equal token counts" without ViT or LLM (SPEC §17)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAGUE = re.compile(r"\b(same|equal)\s+(number\s+of\s+)?(tokens?|token\s+counts?|budget)\b", re.IGNORECASE)


def _texts():
    for pattern in ("aptviz/**/*.py", "aptviz/**/*.js", "docs/*.md", "README.md", "examples/*.py"):
        yield from sorted(ROOT.glob(pattern))


def test_no_label_names_tokens_without_vit_or_llm():
    vague = []
    for path in _texts():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if VAGUE.search(line) and not re.search(r"\b(ViT|LLM)\b", line):
                vague.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert vague == [], "\n".join(vague)


def test_the_check_finds_what_it_looks_for():
    assert VAGUE.search("uniform, same tokens") and VAGUE.search("APT vs uniform at equal token counts")
    assert VAGUE.search("a baseline at the same number of tokens")
