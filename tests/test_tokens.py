import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aptviz.compute.entropy import compute_maps
from aptviz.compute.packing import pack_selection
from aptviz.compute.selection import select_patches
from aptviz.compute.tokens import llm_retention, llm_tokens, llm_tokens_uniform, vit_tokens


def test_issue_portrait_numbers():
    # 352/38/63 tokens at 14/28/56 px on a 1512-cell image: 453 ViT tokens, 189 of 378 LLM tokens
    counts = {14: 352, 28: 38, 56: 63}
    assert vit_tokens(counts) == 453
    assert llm_tokens(counts) == 88 + 38 + 63 == 189
    assert llm_tokens_uniform(1512) == 378
    assert llm_retention(counts, 1512) == 0.5


def test_a_unit_sized_patch_is_one_llm_token_as_uniform():
    assert llm_tokens({14: 0, 28: 10, 56: 0}) == llm_tokens({14: 40, 28: 0, 56: 0}) == 10
    assert llm_tokens({14: 4, 28: 0, 56: 1}, merge_size=1) == 5  # u = 14: every patch is a unit or more


def test_partial_units_are_refused():
    with pytest.raises(ValueError, match="not a whole number"):
        llm_tokens({14: 3, 28: 1})
    with pytest.raises(ValueError, match="merge units"):
        llm_tokens_uniform(6)


@st.composite
def partitions(draw):
    """A real APT selection on a random image: size, content, method and merge size all drawn."""
    merge = draw(st.sampled_from([1, 2, 4]))
    unit = 14 * merge
    h = unit * draw(st.integers(1, 10 // merge + 1))
    w = unit * draw(st.integers(1, 10 // merge + 1))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    flat = rng.integers(0, 256, (max(h // 28, 1), max(w // 28, 1), 3))
    img = np.repeat(np.repeat(flat, 28, 0), 28, 1)[:h, :w]
    img = np.pad(img, ((0, max(0, h - img.shape[0])), (0, max(0, w - img.shape[1])), (0, 0)), mode="edge")
    noisy = rng.random((h, w)) < draw(st.floats(0, 1))
    img[noisy] = rng.integers(0, 256, (int(noisy.sum()), 3))
    method = draw(st.sampled_from(["v1", "v2", "budget"]))
    alpha = draw(st.floats(0, 1)) if method == "budget" else draw(st.floats(0, 3))
    sel = select_patches(compute_maps(img.astype(np.uint8)), method, alpha=alpha)
    return sel, merge, (h, w)


@given(partitions())
def test_llm_tokens_of_nested_partitions_are_whole_units(case):
    sel, merge, (h, w) = case
    n = llm_tokens(sel.tokens_by_scale, 14, merge)
    assert isinstance(n, int)
    # independently: one LLM token per merge unit in which some kept patch has its top-left corner
    packed = pack_selection(np.zeros((3, h, w), np.float32), sel.masks, 14, merge)
    units = {(int(r) // merge, int(c) // merge) for r, c in packed.patch_coords}
    assert n == len(units) == packed.llm_tokens
    assert 0 < llm_retention(sel.tokens_by_scale, sel.base_small_tokens, 14, merge) <= 1


@pytest.mark.parametrize("num_scales", [2, 3])
def test_merge_size_3_has_no_llm_count_with_any_number_of_scales(num_scales):
    """28 px patches straddle 42 px merge units: null with 2 scales as with 3 (not the uniform count)."""
    from aptviz.pipeline import analyze

    from conftest import SAMPLES

    stats = analyze(sorted(SAMPLES.glob("*.png"))[0], methods=["v2", "v1", "budget"], alphas=[1.0, 0.3],
                    merge_size=3, num_scales=num_scales)  # fmt: skip
    assert stats["selections"]
    for sel in stats["selections"]:
        assert (sel["llm_tokens"], sel["llm_tokens_uniform"], sel["llm_retention"]) == (None, None, None)
        assert sel["vit_tokens"] > 0


def test_merge_size_3_with_one_scale_nests():
    """Only 14 px patches: each lies in one 42 px unit, so the count is defined (N / 9)."""
    assert llm_tokens({14: 27}, merge_size=3) == 3
