"""What a selection costs in Qwen2-VL: ViT tokens and LLM tokens.

Qwen2-VL's vision tower sees one token per kept patch (*ViT tokens*). Its
merger then turns every ``merge_size x merge_size`` group of ``patch_size``
tokens -- one *merge unit* of ``u = patch_size * merge_size`` pixels (28 px) --
into one *LLM token*. So APT saves differently at the two ends:

* a patch smaller than a unit is a fraction ``(s / u)**2`` of an LLM token
  (four 14 px patches make one);
* a patch of the unit's size or larger is exactly one LLM token: a kept
  28 px patch costs the LLM what uniform 14 px patches cost it, and only
  patches larger than a unit save LLM tokens.

Plain Qwen2-VL sends ``N / merge_size**2`` LLM tokens for an image whose
finest grid has ``N`` cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from aptviz._log import logger

__all__ = ["TokenCounts", "llm_retention", "llm_tokens", "llm_tokens_uniform", "token_counts", "vit_tokens"]


def vit_tokens(tokens_by_scale: Mapping[int, int]) -> int:
    """Tokens the vision tower sees: one per kept patch, whatever its size.

    Examples
    --------
    >>> vit_tokens({14: 352, 28: 38, 56: 63})
    453
    """
    return int(sum(tokens_by_scale.values()))


def llm_tokens(tokens_by_scale: Mapping[int, int], patch_size: int = 14, merge_size: int = 2) -> int:
    """LLM tokens after Qwen2-VL's merger for a mixed-size selection.

    Parameters
    ----------
    tokens_by_scale : mapping of int to int
        ``{patch size in px: kept patches}`` (``Selection.tokens_by_scale``).
    patch_size : int
        Finest patch size ``P`` in px (14).
    merge_size : int
        Tokens merged per side (2): a merge unit is ``u = P * merge_size`` px.

    Returns
    -------
    int
        ``sum(count[s] * (s / u)**2 for s < u) + sum(count[s] for s >= u)``.

    Raises
    ------
    ValueError
        When a patch scale does not nest in the merge units (a scale smaller
        than a unit that does not divide it, or a larger one that is not a
        whole number of units: 28 px patches straddle 42 px units), whatever
        the counts; or when the patches smaller than a unit do not fill whole
        units, which never happens for APT's nested partitions (every unit is
        either covered by patches smaller than it or lies inside one larger
        patch).

    Examples
    --------
    >>> llm_tokens({14: 352, 28: 38, 56: 63})      # 352/4 + 38 + 63
    189
    >>> llm_tokens({14: 8, 28: 3, 56: 0}, merge_size=4)   # u = 56: 8/16 + 3/4
    Traceback (most recent call last):
        ...
    ValueError: the patches smaller than a 56 px merge unit fill 1.25 units, not a whole number
    >>> llm_tokens({14: 9, 28: 0}, merge_size=3)   # u = 42
    Traceback (most recent call last):
        ...
    ValueError: 28 px patches straddle 42 px merge units
    """
    unit = patch_size * merge_size
    for s in sorted(tokens_by_scale):
        if (unit % s if s < unit else s % unit) != 0:
            raise ValueError(f"{s} px patches straddle {unit} px merge units")
    small = sum((Fraction(int(n) * s * s, unit * unit) for s, n in tokens_by_scale.items() if s < unit), Fraction(0))
    if small.denominator != 1:
        raise ValueError(
            f"the patches smaller than a {unit} px merge unit fill {float(small):g} units, not a whole number"
        )
    large = sum(int(n) for s, n in tokens_by_scale.items() if s >= unit)
    return int(small) + large


def llm_tokens_uniform(base_small_tokens: int, merge_size: int = 2) -> int:
    """LLM tokens plain Qwen2-VL sends: ``N / merge_size**2``.

    Parameters
    ----------
    base_small_tokens : int
        ``N``, the number of cells of the finest grid (H/P * W/P). Both sides
        are multiples of ``merge_size`` after ``smart_resize``.
    merge_size : int
        Tokens merged per side.

    Examples
    --------
    >>> llm_tokens_uniform(1512)
    378
    """
    n, m2 = int(base_small_tokens), merge_size * merge_size
    if n % m2:
        raise ValueError(f"{n} finest cells are not a whole number of {merge_size}x{merge_size} merge units")
    return n // m2


def llm_retention(
    tokens_by_scale: Mapping[int, int], base_small_tokens: int, patch_size: int = 14, merge_size: int = 2
) -> float:
    """``llm_tokens / llm_tokens_uniform``: the share of plain Qwen2-VL's LLM tokens kept.

    Examples
    --------
    >>> llm_retention({14: 352, 28: 38, 56: 63}, 1512)
    0.5
    """
    return llm_tokens(tokens_by_scale, patch_size, merge_size) / llm_tokens_uniform(base_small_tokens, merge_size)


@dataclass(frozen=True)
class TokenCounts:
    """A selection's cost at both ends of Qwen2-VL (stats.json carries these four numbers).

    ``llm_*`` are None when the kept patches do not fill whole merge units,
    which happens only with a merge size whose units the patch scales do not
    nest in (e.g. 3); APT's partitions with merge size 1, 2 or 4 always do.
    """

    vit_tokens: int
    llm_tokens: int | None
    llm_tokens_uniform: int | None
    llm_retention: float | None


def token_counts(
    tokens_by_scale: Mapping[int, int], base_small_tokens: int, patch_size: int = 14, merge_size: int = 2
) -> TokenCounts:
    """ViT tokens, LLM tokens, plain Qwen2-VL's LLM tokens and the LLM retention of one selection.

    Examples
    --------
    >>> token_counts({14: 352, 28: 38, 56: 63}, 1512)
    TokenCounts(vit_tokens=453, llm_tokens=189, llm_tokens_uniform=378, llm_retention=0.5)
    >>> token_counts({14: 9, 28: 4}, 27, merge_size=3).llm_tokens is None
    True
    >>> token_counts({14: 27, 28: 0}, 27, merge_size=3).llm_tokens is None  # 28 px patches straddle 42 px units
    True
    """
    vit = vit_tokens(tokens_by_scale)
    try:
        llm = llm_tokens(tokens_by_scale, patch_size, merge_size)
        uniform = llm_tokens_uniform(base_small_tokens, merge_size)
    except ValueError as exc:
        logger.debug("no LLM token count: {}", exc)
        return TokenCounts(vit, None, None, None)
    return TokenCounts(vit, llm, uniform, llm / uniform)
