"""APT inference: Qwen2-VL, Qwen2.5-VL and Qwen3-VL run on APT's tokens, stock weights (extra ``aptviz[qwen]``).

:func:`enable_apt` turns a transformers ``Qwen2VLForConditionalGeneration``,
``Qwen2_5_VLForConditionalGeneration`` or ``Qwen3VLForConditionalGeneration``
(or the ``*Model`` inside one) into one that also accepts the processor's
``apt_*`` fields, in place and without new weights. Without ``apt_*`` inputs
the model computes exactly what the stock one does.

How APT's tokens go through the stock modules:

* **Vision tower.** Each APT row (one kept patch, area-averaged to ``P x P``)
  goes through the stock patch embedding. The 2-D rotary positions are float
  (row, col) in ``P``-grid units, the patch centre ``(r + (k-1)/2, c + (k-1)/2)``
  (``k = s / P``) or its top-left (``position="top-left"``), fed to the stock
  rotary module (its own frequencies). Attention segments come from
  ``apt_vit_token_counts``. Qwen2.5-VL: a token attends within the window
  holding its top-left cell; the full-attention blocks are stock. Qwen3-VL:
  a patch's learned position embedding is the mean of the stock (interpolated)
  embeddings of the ``P``-cells it covers.
* **Merger.** Each LLM token's ``m x m`` merger slots are filled by the
  patches covering them: four ``P``-px rows merge as stock, a patch of a
  merge unit's size or larger fills all ``m^2`` slots. Qwen3-VL's deepstack
  mergers take the same input.
* **LLM positions (M-RoPE).** Each image token takes the stock ``(t, h, w)``
  of its top-left merge unit; text after the image is positioned exactly as
  in the stock model.
* **Videos** (``apt_video_*``, counts per tubelet). Each tubelet runs through
  the tower as one image of grid ``(1, h, w)``: one attention segment per
  tubelet, as stock. Its LLM tokens take the stock positions of its own
  units, so ``t`` is the tubelet's stock ``t`` (Qwen2.5-VL: scaled by
  ``second_per_grid_ts``; Qwen3-VL: each tubelet's run after its timestamp).

Everything is precomputed from the ``apt_*`` fields and handed to the stock
forward through transformers' own precomputed-input hooks
(``transformers.vision_utils``: ``position_ids``, ``cu_seqlens``,
``window_index``/``cu_window_seqlens``, ``interp_indices``/``interp_weights``;
``mm_encoder_outputs``; ``get_rope_index``). Only two things cannot go
through a hook: the merger input (a forward pre-hook on the merger modules
repeats rows into their slots) and Qwen2.5-VL's window permutation (its stock
``permute_input_for_window_attn`` groups rows four to a merge unit).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F

from aptviz._log import logger

__all__ = [
    "APT_INPUTS",
    "APT_VIDEO_INPUTS",
    "APTPlan",
    "apt_image_features",
    "apt_plan",
    "covered_units",
    "enable_apt",
    "feature_fidelity",
    "is_apt_enabled",
    "tubelet_grid",
]

#: The processor's APT fields that an APT-enabled model accepts.
APT_INPUTS = (
    "apt_pixel_values",
    "apt_patch_sizes",
    "apt_patch_coords",
    "apt_vit_token_counts",
    "apt_llm_token_counts",
)
#: The processor's APT video fields (one entry per tubelet in the counts), the same layout per tubelet.
APT_VIDEO_INPUTS = tuple(name.replace("apt_", "apt_video_", 1) for name in APT_INPUTS)
POSITIONS = ("centre", "top-left")
_SUPPORTED = ("Qwen2VLModel", "Qwen2_5_VLModel", "Qwen3VLModel")


@dataclass(frozen=True)
class APTPlan:
    """How one batch of APT rows runs through a Qwen2-VL-family vision tower.

    Attributes
    ----------
    position_ids : Tensor, float32, (N, 2)
        Rotary (row, col) of each row in ``P``-grid units.
    cu_seqlens : Tensor, int32, (images + 1,)
        Attention segments: one per image.
    slots : Tensor, int64, (L, m * m)
        For each LLM token, the row filling each of its merger slots (raster order).
    token_units : Tensor, int64, (L,)
        Each LLM token's top-left merge unit, raster index inside its image.
    token_spans : Tensor, int64, (L,)
        Merge units per side each LLM token covers (1, or ``k / m`` for a patch of ``k >= m`` cells).
    llm_counts : list of int
        LLM tokens per image.
    merger_slots : Tensor, int64, (L, m * m)
        ``slots`` as the merger sees them (Qwen2.5-VL: rows and tokens in window order).
    extra : dict
        Precomputed inputs for the stock vision forward.
    row_perm : Tensor or None
        Qwen2.5-VL: the rows in window order.
    """

    position_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    slots: torch.Tensor
    token_units: torch.Tensor
    token_spans: torch.Tensor
    llm_counts: list
    merger_slots: torch.Tensor
    extra: dict
    row_perm: torch.Tensor | None = None

    def vision_kwargs(self) -> dict:
        """The precomputed inputs of the stock vision forward (popped by ``transformers.vision_utils``)."""
        return {"position_ids": self.position_ids, "cu_seqlens": self.cu_seqlens, **self.extra}


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    """Exclusive cumulative sum: where each image's items start."""
    return F.pad(counts.cumsum(0), (1, 0))[:-1]


def _check_rows(sizes, coords, counts, grid, patch_size: int, m: int):
    """Each row's size in cells and image; raise unless the rows partition the images in nested patches."""
    device, n = coords.device, sizes.numel()
    if len(counts) != len(grid) or int(counts.sum()) != n or len(coords) != n:
        raise ValueError(
            f"apt_vit_token_counts ({counts.tolist()}) must hold one count per image of image_grid_thw "
            f"({len(grid)}) and sum to the {n} APT rows"
        )
    if (grid[:, 0] != 1).any():
        raise ValueError("APT runs on still images (image_grid_thw with t = 1), not on videos")
    if (sizes % patch_size).any() or (sizes <= 0).any():
        raise ValueError(f"APT patch sizes must be multiples of the {patch_size} px patch size")
    k = sizes // patch_size
    image = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    gh, gw = grid[image, 1], grid[image, 2]
    r, c = coords[:, 0], coords[:, 1]
    nests = torch.where(k < m, m % k == 0, k % m == 0)
    inside = (r % k == 0) & (c % k == 0) & (r >= 0) & (c >= 0) & (r + k <= gh) & (c + k <= gw)
    if bool(nests.all()) and not bool(inside.all()):
        where = int(torch.nonzero(~inside)[0])
        raise ValueError(
            f"APT row {where} (a {int(sizes[where])} px patch at cell {coords[where].tolist()} of image "
            f"{int(image[where])}, grid {grid[image[where], 1:].tolist()}) lies outside its image or off its "
            "patch grid: apt_patch_coords and apt_vit_token_counts must come from the processor, in its order"
        )
    if not bool((nests & inside).all()):
        bad = sorted({int(s) for s in sizes[~(nests & inside)].tolist()})
        raise ValueError(
            f"APT patches of {bad} px do not nest into the model's {patch_size * m} px merge units "
            f"(patch size {patch_size}, merge size {m})"
        )
    area = torch.zeros(len(grid), dtype=torch.long, device=device).index_add_(0, image, k * k)
    if not bool((area == grid[:, 1] * grid[:, 2]).all()):
        raise ValueError("APT rows do not tile their images (the patches must partition each image)")
    return k, image


def _merger_slots(k, r, c, token, tokens: int, m: int) -> torch.Tensor:
    """(tokens, m * m): the row filling each merger slot; a patch fills the min(k, m)^2 slots it covers."""
    device = k.device
    n = k.numel()
    step = torch.arange(m, device=device)
    kk = k.clamp(max=m).view(-1, 1, 1)
    covered = (step.view(1, m, 1) < kk) & (step.view(1, 1, m) < kk)
    slot = ((r % m).view(-1, 1, 1) + step.view(1, m, 1)) * m + (c % m).view(-1, 1, 1) + step.view(1, 1, m)
    flat = (token.view(-1, 1, 1) * m * m + slot)[covered]
    rows = torch.arange(n, device=device).view(-1, 1, 1).expand(n, m, m)[covered]
    if not bool((torch.bincount(flat, minlength=tokens * m * m) == 1).all()):
        raise ValueError("APT patches overlap or leave merge-unit slots empty")
    return torch.empty(tokens * m * m, dtype=torch.long, device=device).scatter_(0, flat, rows).view(tokens, m * m)


def _llm_tokens(r, c, image, grid, m: int, llm_token_counts=None):
    """LLM tokens: one per merge unit holding a patch's top-left, in the rows' (unit-major) order.

    Returns each token's unit key (over the batch), each row's token, each token's image and the
    tokens per image.
    """
    device = r.device
    units_w = grid[:, 2] // m
    unit_offset = _offsets((grid[:, 1] // m) * units_w)
    unit = (r // m) * units_w[image] + c // m
    keys, token = torch.unique(unit_offset[image] + unit, sorted=True, return_inverse=True)
    token_image = torch.zeros(len(keys), dtype=torch.long, device=device).scatter_(0, token, image)
    llm_counts = torch.bincount(token_image, minlength=len(grid))
    if llm_token_counts is not None:
        expected = torch.as_tensor(llm_token_counts, device=device).long().reshape(-1)
        if not torch.equal(expected, llm_counts):
            raise ValueError(
                f"apt_llm_token_counts {expected.tolist()} do not match the patches ({llm_counts.tolist()} LLM tokens)"
            )
    return keys, token, token_image, llm_counts


def apt_plan(
    patch_sizes: torch.Tensor,
    patch_coords: torch.Tensor,
    vit_token_counts: torch.Tensor,
    grid_thw: torch.Tensor,
    patch_size: int,
    merge_size: int,
    position: str = "centre",
    llm_token_counts: torch.Tensor | None = None,
) -> APTPlan:
    """Positions, attention segments and merger slots of a batch of APT rows (no weights involved).

    Parameters
    ----------
    patch_sizes, patch_coords, vit_token_counts, llm_token_counts : Tensor
        The processor's ``apt_patch_sizes`` (px), ``apt_patch_coords`` ((row, col) in ``P`` units),
        ``apt_vit_token_counts`` and, to check, ``apt_llm_token_counts``.
    grid_thw : Tensor, (images, 3)
        ``image_grid_thw``.
    patch_size, merge_size : int
        The vision tower's ``P`` and ``m``.
    position : {"centre", "top-left"}
        Where a large patch sits for the rotary embedding.

    Returns
    -------
    APTPlan

    Raises
    ------
    ValueError
        Rows that do not partition the images, or patch sizes that do not nest into merge units.

    Examples
    --------
    >>> import torch
    >>> sizes = torch.tensor([14, 14, 14, 14, 28])
    >>> coords = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1], [0, 2]])
    >>> plan = apt_plan(sizes, coords, torch.tensor([5]), torch.tensor([[1, 2, 4]]), 14, 2)
    >>> plan.slots.tolist(), plan.position_ids[4].tolist(), plan.llm_counts
    ([[0, 1, 2, 3], [4, 4, 4, 4]], [0.5, 2.5], [2])
    """
    if position == "center":
        position = "centre"
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {', '.join(POSITIONS)}, got {position!r}")
    device = patch_coords.device
    sizes = torch.as_tensor(patch_sizes, device=device).long().reshape(-1)
    coords = torch.as_tensor(patch_coords, device=device).long().reshape(-1, 2)
    counts = torch.as_tensor(vit_token_counts, device=device).long().reshape(-1)
    grid = torch.as_tensor(grid_thw, device=device).long().reshape(-1, 3)
    m, n = merge_size, sizes.numel()
    k, image = _check_rows(sizes, coords, counts, grid, patch_size, m)
    r, c = coords[:, 0], coords[:, 1]

    keys, token, token_image, llm_counts = _llm_tokens(r, c, image, grid, m, llm_token_counts)
    tokens = len(keys)
    unit_offset = _offsets((grid[:, 1] // m) * (grid[:, 2] // m))
    slots = _merger_slots(k, r, c, token, tokens, m)

    spans = torch.zeros(tokens, dtype=torch.long, device=device).scatter_reduce(
        0, token, (k // m).clamp(min=1), reduce="amax", include_self=False
    )
    offset = (k - 1).to(torch.float32) / 2 if position == "centre" else torch.zeros(n, device=device)
    positions = torch.stack([r + offset, c + offset], dim=-1).to(torch.float32)
    cu_seqlens = F.pad(counts.cumsum(0), (1, 0)).to(torch.int32)
    return APTPlan(
        position_ids=positions,
        cu_seqlens=cu_seqlens,
        slots=slots,
        token_units=keys - unit_offset[token_image],
        token_spans=spans,
        llm_counts=llm_counts.tolist(),
        merger_slots=slots,
        extra={},
    )


def _windowed(plan: APTPlan, coords: torch.Tensor, counts: torch.Tensor, grid: torch.Tensor, merge_size: int,
              window_units: int) -> APTPlan:
    """Qwen2.5-VL: rows and LLM tokens in window order (a row's window holds its top-left cell).

    The stock tower permutes merge units into windows of ``window_units``
    units a side, runs its windowed blocks on segments ``cu_window_seqlens``
    and puts the merged tokens back with ``argsort(window_index)``. Here rows
    are sorted by window (stable: unit-major inside a window, as stock),
    ``window_index`` is the tokens' window order, and the merger reads the
    permuted rows.
    """
    device = coords.device
    m, ws = merge_size, window_units
    image = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    win_h = grid[:, 1] // m // ws + 1  # as stock: always one padded window more (empty ones drop out)
    win_w = grid[:, 2] // m // ws + 1
    win = _offsets(win_h * win_w)[image] + (coords[:, 0] // m // ws) * win_w[image] + coords[:, 1] // m // ws
    row_perm = torch.sort(win, stable=True).indices
    per_window = torch.bincount(win)
    cu_window = F.pad(per_window[per_window > 0].cumsum(0), (1, 0)).to(torch.int32)
    token_win = win[plan.slots[:, 0]]
    token_perm = torch.sort(token_win, stable=True).indices
    inverse = torch.empty_like(row_perm)
    inverse[row_perm] = torch.arange(len(row_perm), device=device)
    return APTPlan(
        **{**plan.__dict__, "merger_slots": inverse[plan.slots[token_perm]], "row_perm": row_perm,
           "extra": {**plan.extra, "window_index": token_perm, "cu_window_seqlens": cu_window}}
    )


def _interpolated(plan: APTPlan, visual, sizes, coords, counts, grid, patch_size) -> APTPlan:
    """Qwen3-VL: each row's learned position embedding, the mean over the ``P``-cells it covers.

    Built from the stock per-cell taps (``get_vision_interpolation_indices_and_weights``
    in raster order): a patch of ``k x k`` cells takes all their taps, each weight divided by ``k^2``
    (rows with fewer cells are padded with zero weights).
    """
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights

    device = coords.device
    indices, weights = get_vision_interpolation_indices_and_weights(
        grid,
        num_grid_per_side=visual.num_grid_per_side,
        mode=getattr(visual, "interpolation_mode", "bilinear"),
        align_corners=getattr(visual, "interpolation_align_corners", True),
        spatial_merge_size=1,
    )
    k = sizes // patch_size
    image = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    width = grid[image, 2]
    top = int(k.max()) if len(k) else 1
    step = torch.arange(top, device=device)
    kk = k.view(-1, 1, 1)
    covered = (step.view(1, top, 1) < kk) & (step.view(1, 1, top) < kk)
    cell = (coords[:, 0].view(-1, 1, 1) + step.view(1, top, 1)) * width.view(-1, 1, 1) + (
        coords[:, 1].view(-1, 1, 1) + step.view(1, 1, top)
    )
    cell = torch.where(covered, cell, cell[:, :1, :1]) + _offsets(grid[:, 1] * grid[:, 2])[image].view(-1, 1, 1)
    taps = indices.shape[-1]
    idx = indices.to(device)[cell].reshape(len(k), top * top * taps)
    scale = covered.to(weights.dtype) / (kk * kk).to(weights.dtype)
    wts = (weights.to(device)[cell] * scale[..., None]).reshape(len(k), top * top * taps)
    idx, wts = _merged_taps(idx, wts)
    return APTPlan(**{**plan.__dict__, "extra": {**plan.extra, "interp_indices": idx, "interp_weights": wts}})


def _merged_taps(indices: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's repeated taps merged (weights summed), padded with zero weights: fewer embedding lookups.

    Neighbouring cells share most of their bilinear taps, so a ``k x k`` patch
    needs about ``(k + 1)^2`` distinct taps instead of ``4 k^2``.
    """
    order = indices.argsort(dim=1)
    indices, weights = indices.gather(1, order), weights.gather(1, order)
    first = torch.ones_like(indices, dtype=torch.bool)
    first[:, 1:] = indices[:, 1:] != indices[:, :-1]
    slot = first.long().cumsum(1) - 1
    width = int(slot.max()) + 1 if slot.numel() else 1
    merged = torch.zeros((len(indices), width), dtype=indices.dtype, device=indices.device).scatter_(1, slot, indices)
    summed = torch.zeros((len(indices), width), dtype=weights.dtype, device=weights.device)
    return merged, summed.scatter_add_(1, slot, weights)


def _family(visual) -> str:
    if hasattr(visual, "deepstack_merger_list") and hasattr(visual, "pos_embed"):
        return "qwen3-vl"
    if hasattr(visual, "fullatt_block_indexes") and hasattr(visual, "window_size"):
        return "qwen2.5-vl"
    return "qwen2-vl"


def _vision_plan(model, apt: dict, grid_thw: torch.Tensor) -> APTPlan:
    """The :class:`APTPlan` of ``apt`` for this model's vision tower."""
    visual = model.visual
    cfg = visual.config
    patch_size, merge_size = int(cfg.patch_size), int(cfg.spatial_merge_size)
    device = apt["apt_pixel_values"].device
    sizes = apt["apt_patch_sizes"].to(device).long()
    coords = apt["apt_patch_coords"].to(device).long()
    counts = apt["apt_vit_token_counts"].to(device).long().reshape(-1)
    grid = grid_thw.to(device).long()
    rows = apt["apt_pixel_values"]
    width = int(getattr(cfg, "in_channels", 3)) * int(getattr(cfg, "temporal_patch_size", 2)) * patch_size**2
    if rows.ndim != 2 or rows.shape[0] != sizes.numel() or rows.shape[1] != width:
        raise ValueError(
            f"apt_pixel_values must be ({sizes.numel()}, {width}): one row of C x T x P x P values per entry of "
            f"apt_patch_sizes; got {tuple(rows.shape)}"
        )
    plan = apt_plan(sizes, coords, counts, grid, patch_size, merge_size, model._apt_position,
                    apt.get("apt_llm_token_counts"))
    family = _family(visual)
    if family == "qwen2.5-vl":
        plan = _windowed(plan, coords, counts, grid, merge_size, int(cfg.window_size) // merge_size // patch_size)
    elif family == "qwen3-vl":
        plan = _interpolated(plan, visual, sizes, coords, counts, grid, patch_size)
    return plan


def _merger_pre_hook(module, args):
    """Repeat the APT rows into the merger's ``m x m`` slots (no-op outside an APT call)."""
    plan = getattr(module, "_apt_plan", None)
    if plan is None:
        return None
    return (args[0][plan.merger_slots.reshape(-1)], *args[1:])


def _mergers(visual) -> list:
    return [visual.merger, *getattr(visual, "deepstack_merger_list", [])]


def apt_image_features(model, apt: dict, image_grid_thw: torch.Tensor):
    """The vision tower's output on APT rows, split per image like ``get_image_features``.

    Parameters
    ----------
    model : an APT-enabled Qwen2-VL-family ``*Model``
    apt : dict
        The ``apt_*`` fields.
    image_grid_thw : Tensor

    Returns
    -------
    BaseModelOutputWithPooling
        ``pooler_output``: a tuple of (LLM tokens, hidden) tensors, one per image
        (Qwen3-VL: ``deepstack_features`` split the same way).
    """
    if not isinstance(model, _APTModel):
        raise ValueError(f"{type(model).__name__} is not APT-enabled: call aptviz.qwen2vl.enable_apt(model) first")
    visual = model.visual
    plan = _vision_plan(model, apt, image_grid_thw)
    mergers = _mergers(visual)
    for merger in mergers:
        merger._apt_plan = plan
    visual._apt_plan = plan
    try:
        out = visual(
            apt["apt_pixel_values"].type(visual.dtype),
            grid_thw=image_grid_thw,
            return_dict=True,
            **plan.vision_kwargs(),
        )
    finally:
        for merger in mergers:
            merger._apt_plan = None
        visual._apt_plan = None
    out.pooler_output = torch.split(out.pooler_output, plan.llm_counts)
    if getattr(out, "deepstack_features", None) is not None:
        out.deepstack_features = [torch.split(f, plan.llm_counts) for f in out.deepstack_features]
    out.apt_plan = plan
    return out


# --- signatures -------------------------------------------------------------------------------------


def _bind(fn, args: tuple, kwargs: dict) -> dict:
    """``args`` and ``kwargs`` of a call to ``fn`` as one keyword dict (``**kwargs`` flattened)."""
    if not args:
        return dict(kwargs)
    bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    out = {}
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise TypeError(f"{fn.__qualname__}: unexpected positional arguments")
        else:
            out[name] = value
    return out


def _accepted(fn, kwargs: dict) -> dict:
    """``kwargs`` that ``fn`` accepts (all of them when it takes ``**kwargs``): tolerant of versions."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _with_apt_parameters(fn, base, names=APT_INPUTS):
    """``fn`` with ``base``'s signature plus the keyword-only ``apt_*`` parameters (for ``generate``'s checks)."""
    sig = inspect.signature(base)
    params = [p for p in sig.parameters.values() if p.name not in APT_INPUTS + APT_VIDEO_INPUTS]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in names]
    at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    fn.__signature__ = sig.replace(parameters=params[:at] + extra + params[at:])
    fn.__doc__ = base.__doc__
    return fn


def _pop_apt(kwargs: dict, video: bool = False) -> dict | None:
    """The image (or, with ``video``, the video) APT fields popped from ``kwargs``, under the image fields' names."""
    names = APT_VIDEO_INPUTS if video else APT_INPUTS
    apt = {name: kwargs.pop(name) for name in names if name in kwargs}
    apt = {image: apt[name] for name, image in zip(names, APT_INPUTS) if apt.get(name) is not None}
    if not apt:
        return None
    missing = [name for name, image in zip(names, APT_INPUTS) if image not in apt and image != "apt_llm_token_counts"]
    if missing:
        raise ValueError(f"APT inputs need all of {', '.join(names[:4])}; missing {', '.join(missing)}")
    return apt


def tubelet_grid(video_grid_thw: torch.Tensor) -> torch.Tensor:
    """Each video tubelet as an image grid ``(1, h, w)``, tubelets in order (stock: one attention segment each).

    Examples
    --------
    >>> tubelet_grid(torch.tensor([[2, 4, 6], [1, 2, 2]])).tolist()
    [[1, 4, 6], [1, 4, 6], [1, 2, 2]]
    """
    grid = torch.repeat_interleave(video_grid_thw.long(), video_grid_thw[:, 0].long(), dim=0)
    grid[:, 0] = 1
    return grid


# --- the model classes --------------------------------------------------------------------------------


def _stock_length_row(ids, typ, segments: dict, video_id: int):
    """One text row with each APT segment's pads expanded to its stock count; and where the kept tokens are.

    ``segments`` maps a pad id to ``[[(apt count, stock count, top-left units), ...], next]``: one
    entry per image, or per video tubelet, in text order. A run of pads holds one image, or one or more
    consecutive tubelets of a video. Returns the expanded ids, their token types (or None) and, for
    every token of ``ids``, its index in the expanded row (an APT token: its top-left unit's).
    """
    device = ids.device
    pad_ids = torch.tensor(list(segments), device=device)
    where = torch.nonzero(torch.isin(ids, pad_ids)).flatten()
    breaks = (where.diff() != 1) | (ids[where[1:]] != ids[where[:-1]])
    runs = torch.tensor_split(where, (torch.nonzero(breaks).flatten() + 1).tolist())
    pieces, types_b, keep, done, length = [], [], [], 0, 0
    for run in (r for r in runs if len(r)):
        start, end = int(run[0]), int(run[-1]) + 1
        pieces.append(ids[done:start])
        types_b.append(typ[done:start] if typ is not None else None)
        keep.append(torch.arange(start - done, device=device) + length)
        length += start - done
        token = int(ids[start])
        queue = segments[token]
        used = 0
        while used < end - start:  # a run holds one image, or one or more tubelets of a video
            if queue[1] >= len(queue[0]):
                kind = "video" if token == video_id else "image"
                raise ValueError(f"the text holds more {kind} pads than the {kind}s' LLM tokens")
            count, stock_count, units = queue[0][queue[1]]
            queue[1] += 1
            used += count
            pieces.append(ids.new_full((stock_count,), token))
            types_b.append(typ.new_full((stock_count,), int(typ[start])) if typ is not None else None)
            keep.append(units + length)
            length += stock_count
        if used != end - start:
            raise ValueError(
                f"{end - start} pads in a run of the text but the APT features there are {used} LLM "
                "tokens; the processor's apt_tokens=True puts apt_llm_token_counts pads in the text"
            )
        done = end
    pieces.append(ids[done:])
    types_b.append(typ[done:] if typ is not None else None)
    keep.append(torch.arange(len(ids) - done, device=device) + length)
    return torch.cat(pieces), (torch.cat(types_b) if typ is not None else None), torch.cat(keep)


class _APTModel:
    """Mixed into a Qwen2-VL-family ``*Model``: ``forward`` and ``get_rope_index`` take ``apt_*``."""

    _apt_position = "centre"

    def _apt_check_pads(self, input_ids, grid_thw, llm_counts: list, video: bool = False) -> None:
        """The text must carry as many image (video) pads as APT gives LLM tokens."""
        token = self.config.video_token_id if video else self.config.image_token_id
        what = "video" if video else "image"
        field = "apt_video_llm_token_counts" if video else "apt_llm_token_counts"
        pads = int((input_ids == token).sum())
        apt = int(sum(llm_counts))
        if pads == apt:
            return
        m = self.visual.config.spatial_merge_size
        stock = int((grid_thw.prod(-1) // (m * m)).sum())
        if pads == stock:
            raise ValueError(
                f"the text holds the stock {stock} {what} pads but the inputs carry APT features ({apt} LLM "
                "tokens): build the processor with apt_tokens=True (APTQwen2VLProcessor(..., apt_tokens=True) "
                f"or images_kwargs={{'apt_tokens': True}}) so the text gets {field} pads per {what}"
            )
        raise ValueError(
            f"the text holds {pads} {what} pads but the APT features are {apt} LLM tokens "
            f"({field}); the processor's apt_tokens=True puts that many pads in the text"
        )

    def get_apt_image_features(self, image_grid_thw, **apt):
        """The image features of APT rows (see :func:`apt_image_features`)."""
        return apt_image_features(self, apt, image_grid_thw)

    def get_apt_video_features(self, video_grid_thw, **apt):
        """The video features of APT rows, split per video like ``get_video_features``.

        ``apt`` holds the video fields under the image fields' names
        (``apt_pixel_values``, ..., counts per tubelet). Each tubelet runs as
        one image of grid ``(1, h, w)`` (:func:`tubelet_grid`): one attention
        segment per tubelet, as the stock tower does.
        """
        out = apt_image_features(self, apt, tubelet_grid(video_grid_thw.to(apt["apt_pixel_values"].device)))
        per_video = torch.split(torch.as_tensor(out.apt_plan.llm_counts), video_grid_thw[:, 0].long().tolist())
        sizes = [int(c.sum()) for c in per_video]
        out.pooler_output = torch.split(torch.cat(out.pooler_output), sizes)
        if getattr(out, "deepstack_features", None) is not None:
            out.deepstack_features = [torch.split(torch.cat(f), sizes) for f in out.deepstack_features]
        return out

    def _apt_get_image_features(self, *args, **kwargs):
        # generate() encodes images before the prefill, through get_image_features with every
        # argument its signature names: the apt_* fields arrive here
        apt = _pop_apt(kwargs)
        if apt is None:
            return super().get_image_features(*args, **kwargs)
        kw = _bind(super().get_image_features, args, kwargs)
        return self.get_apt_image_features(kw["image_grid_thw"], **apt)

    def _apt_get_video_features(self, *args, **kwargs):
        apt = _pop_apt(kwargs, video=True)
        if apt is None:
            return super().get_video_features(*args, **kwargs)
        kw = _bind(super().get_video_features, args, kwargs)
        return self.get_apt_video_features(kw["video_grid_thw"], **apt)

    def get_rope_index(self, input_ids, *args, **kwargs):
        apt, apt_video = _pop_apt(kwargs), _pop_apt(kwargs, video=True)
        if apt is None and apt_video is None:
            return super().get_rope_index(input_ids, *args, **kwargs)
        kw = _bind(super().get_rope_index, (input_ids, *args), kwargs)
        return self._apt_rope_index(kw, apt, apt_video)

    def _apt_segments(self, grid, apt, video: bool, device) -> tuple[list, list, list]:
        """Per image (per video tubelet): APT LLM tokens, stock LLM tokens, each APT token's top-left unit."""
        m = int(self.visual.config.spatial_merge_size)
        grid = tubelet_grid(grid) if video else grid
        stock = (grid.prod(-1) // (m * m)).tolist()
        if apt is None:  # stock features: every unit is a token
            return stock, stock, [torch.arange(n, device=device) for n in stock]
        plan = apt_plan(
            apt["apt_patch_sizes"], apt["apt_patch_coords"].to(device), apt["apt_vit_token_counts"],
            grid, int(self.visual.config.patch_size), m, self._apt_position, apt.get("apt_llm_token_counts"),
        )
        return plan.llm_counts, stock, list(torch.split(plan.token_units.to(device), plan.llm_counts))

    def _apt_rope_index(self, kw: dict, apt: dict | None, apt_video: dict | None = None):
        """Stock M-RoPE on the stock-length sequence, then each APT token's top-left unit's positions.

        The text is expanded to the stock pad count (image by image, video
        tubelet by tubelet), the stock ``get_rope_index`` positions it, and the
        positions of the text tokens and of each APT token's top-left merge
        unit are kept. A video's tubelet ``j`` is its stock units ``j*U ..``:
        the stock ``t`` of tubelet ``j`` (Qwen2.5-VL scaled by
        ``second_per_grid_ts``, Qwen3-VL's per-tubelet runs after timestamps).
        """
        input_ids = kw.pop("input_ids")
        device = input_ids.device
        ids_of = {"image": self.config.image_token_id, "video": self.config.video_token_id}
        segments = {}
        for what, fields in (("image", apt), ("video", apt_video)):
            grid = kw.get(f"{what}_grid_thw")
            if grid is None:
                if fields is not None:
                    raise ValueError(f"APT inputs need {what}_grid_thw")
                continue
            counts, stock, units = self._apt_segments(grid, fields, what == "video", device)
            if fields is not None:
                self._apt_check_pads(input_ids, grid, counts, video=what == "video")
            segments[ids_of[what]] = [list(zip(counts, stock, units)), 0]
        mask = kw.get("attention_mask")
        mask = mask.bool() if mask is not None and mask.ndim == 2 else torch.ones_like(input_ids, dtype=torch.bool)
        types = kw.get("mm_token_type_ids")
        rows, kept, row_types = [], [], []
        for b in range(input_ids.shape[0]):
            row, row_type, keep = _stock_length_row(
                input_ids[b][mask[b]], types[b][mask[b]] if types is not None else None, segments, ids_of["video"]
            )
            rows.append(row)
            row_types.append(row_type)
            kept.append(keep)
        longest = max(len(r) for r in rows)
        expanded = input_ids.new_zeros((len(rows), longest))
        expanded_mask = torch.zeros_like(expanded)
        expanded_types = torch.zeros_like(expanded) if types is not None else None
        for b, row in enumerate(rows):  # left padding
            expanded[b, longest - len(row):] = row
            expanded_mask[b, longest - len(row):] = 1
            if expanded_types is not None:
                expanded_types[b, longest - len(row):] = row_types[b].to(expanded.dtype)
        call = dict(kw, attention_mask=expanded_mask)
        if expanded_types is not None:
            call["mm_token_type_ids"] = expanded_types.to(types.dtype)
        stock_fn = super().get_rope_index
        positions, _ = stock_fn(expanded, **_accepted(stock_fn, call))
        out = positions.new_zeros((positions.shape[0], *input_ids.shape))
        deltas = []
        for b in range(input_ids.shape[0]):
            mine = positions[:, b, longest - len(rows[b]):][:, kept[b]]
            out[:, b, mask[b]] = mine
            deltas.append(mine.max() + 1 - len(kept[b]))
        return out, torch.stack(deltas).reshape(-1, 1).to(input_ids.device)

    def _apt_forward(self, *args, **kwargs):
        apt, apt_video = _pop_apt(kwargs), _pop_apt(kwargs, video=True)
        if apt is None and apt_video is None:
            return super().forward(*args, **kwargs)
        kw = _bind(super().forward, args, kwargs)
        input_ids = kw.get("input_ids")
        if input_ids is None:
            raise ValueError("APT inputs need input_ids (the image and video pads say where the APT features go)")
        if apt is not None and not bool((input_ids == self.config.image_token_id).any()):
            apt = None  # a decode step, or text only: the APT fields are not used
        if apt_video is not None and not bool((input_ids == self.config.video_token_id).any()):
            apt_video = None
        if apt is None and apt_video is None:
            return super().forward(**kw)
        encoded = dict(kw.get("mm_encoder_outputs") or {})
        for what, fields, pixels in (("image", apt, "pixel_values"), ("video", apt_video, "pixel_values_videos")):
            grid = kw.get(f"{what}_grid_thw")
            if fields is not None and grid is None:
                raise ValueError(f"APT inputs need {what}_grid_thw")
            if encoded.get(what) is None:
                if fields is not None:
                    features = getattr(self, f"get_apt_{what}_features")(grid, **fields)
                    counts = features.apt_plan.llm_counts
                    self._apt_check_pads(input_ids, grid, counts, video=what == "video")
                    encoded[what] = features
                elif kw.get(pixels) is not None:  # stock pixels beside APT's other modality
                    encoded[what] = getattr(self, f"get_{what}_features")(kw[pixels], grid, return_dict=True)
            kw[pixels] = None  # the stock rows are replaced by APT's (or encoded above)
        kw["mm_encoder_outputs"] = encoded
        cache = kw.get("cache", kw.get("past_key_values"))
        if kw.get("position_ids") is None and (cache is None or cache.get_seq_length() == 0):
            rope = {
                "image_grid_thw": kw.get("image_grid_thw"),
                "video_grid_thw": kw.get("video_grid_thw"),
                "attention_mask": kw.get("attention_mask"),
                "mm_token_type_ids": kw.get("mm_token_type_ids"),
                "second_per_grid_ts": kw.get("second_per_grid_ts"),
            }
            rope = {k: v for k, v in rope.items() if v is not None}
            kw["position_ids"], self.rope_deltas = self._apt_rope_index({"input_ids": input_ids, **rope}, apt,
                                                                        apt_video)  # fmt: skip
        return super().forward(**kw)


class _APTVision:
    """Mixed into a vision tower: Qwen2.5-VL's window permutation on APT rows."""

    _apt_plan = None

    def permute_input_for_window_attn(self, input_tensor, window_index, seq_len):
        plan = self._apt_plan
        if plan is None or plan.row_perm is None:
            return super().permute_input_for_window_attn(input_tensor, window_index, seq_len)
        # the stock reshapes rows to (units, m*m, -1): APT rows are not four to a unit, so permute rows
        return input_tensor[plan.row_perm]


class _APTGeneration:
    """Mixed into a ``*ForConditionalGeneration``: ``forward`` and ``generate`` take ``apt_*``."""

    def _apt_forward(self, *args, **kwargs):
        # the stock forward hands **kwargs (the apt_* fields) on to the inner model
        return super().forward(*args, **kwargs)

    def generate(self, *args, **kwargs):
        # transformers encodes images before the prefill only when pixel_values is there, and pops the apt_*
        # fields either way: without pixel_values the image pads would be read as text, silently
        if kwargs.get("pixel_values") is None and any(kwargs.get(name) is not None for name in APT_INPUTS):
            raise ValueError(
                "generate with apt_* inputs needs the processor's pixel_values too (transformers encodes the "
                "images before the prefill only when pixel_values is given); pass the processor's output whole"
            )
        return super().generate(*args, **kwargs)

    def prepare_inputs_for_generation(self, *args, **kwargs):
        inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        if kwargs.get("pixel_values") is not None and inputs.get("pixel_values") is None:
            for name in APT_INPUTS:  # dropped with pixel_values after the prefill
                inputs.pop(name, None)
        if kwargs.get("pixel_values_videos") is not None and inputs.get("pixel_values_videos") is None:
            for name in APT_VIDEO_INPUTS:
                inputs.pop(name, None)
        return inputs

    def get_apt_image_features(self, image_grid_thw, **apt):
        """The image features of APT rows (see :func:`apt_image_features`)."""
        return self.model.get_apt_image_features(image_grid_thw, **apt)

    def get_apt_video_features(self, video_grid_thw, **apt):
        """The video features of APT rows (see ``get_apt_video_features`` of the inner model)."""
        return self.model.get_apt_video_features(video_grid_thw, **apt)


@cache
def _apt_class(mixin: type, base: type) -> type:
    """``base`` with ``mixin``'s methods; keeps ``base``'s name (``save_pretrained`` writes it)."""

    def forward(self, *args, **kwargs):
        return self._apt_forward(*args, **kwargs)

    def get_image_features(self, *args, **kwargs):
        return self._apt_get_image_features(*args, **kwargs)

    def get_video_features(self, *args, **kwargs):
        return self._apt_get_video_features(*args, **kwargs)

    namespace = {"__module__": base.__module__, "__qualname__": base.__qualname__, "_apt_base": base}
    for name, fn, names in (("forward", forward, APT_INPUTS + APT_VIDEO_INPUTS),
                            ("get_image_features", get_image_features, APT_INPUTS),
                            ("get_video_features", get_video_features, APT_VIDEO_INPUTS)):  # fmt: skip
        if hasattr(mixin, f"_apt_{name}") and hasattr(base, name):  # base's signature + apt_*: generate reads it
            namespace[name] = _with_apt_parameters(fn, getattr(base, name), names)
    return type(base.__name__, (mixin, base), namespace)


def _swap(module, mixin: type) -> None:
    if not isinstance(module, mixin):
        module.__class__ = _apt_class(mixin, type(module))


def _inner(model):
    """The ``*Model`` of a model (itself, or its ``.model``) and whether it is a generation model."""
    for candidate, outer in ((model, False), (getattr(model, "model", None), True)):
        names = {k.__name__ for k in type(candidate).__mro__} if candidate is not None else set()
        if names & set(_SUPPORTED) and hasattr(candidate, "visual"):
            return candidate, outer
    raise TypeError(
        f"enable_apt supports {', '.join(_SUPPORTED)} and their *ForConditionalGeneration, got {type(model).__name__}"
    )


def _check_hooks(inner) -> None:
    """Raise unless this transformers has the precomputed-input hooks APT hands its tensors to."""
    import transformers

    try:
        import transformers.vision_utils  # noqa: F401  (position_ids, cu_seqlens, windows, interp taps)
    except ImportError:
        found = False
    else:
        found = hasattr(inner, "get_rope_index") and hasattr(inner, "get_image_features")
        if _family(inner.visual) == "qwen2.5-vl":
            found = found and hasattr(inner.visual, "permute_input_for_window_attn")
    if not found:
        raise RuntimeError(
            f"enable_apt needs a transformers with transformers.vision_utils' precomputed vision inputs "
            f"(5.18 to 5.25 are tested); this is transformers {transformers.__version__}"
        )


def enable_apt(model, position: str = "centre"):
    """Let a Qwen2-VL, Qwen2.5-VL or Qwen3-VL model run on APT's tokens; in place, no new weights.

    Parameters
    ----------
    model : Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration,
        Qwen3VLForConditionalGeneration or their ``*Model``
    position : {"centre", "top-left"}
        Where a large patch sits for the vision rotary embedding: its centre
        ``(r + (k-1)/2, c + (k-1)/2)`` in ``P``-grid units, or its top-left.

    Returns
    -------
    The same model. ``forward`` and ``generate`` now also accept the processor's
    ``apt_*`` fields (the text must then carry ``apt_llm_token_counts[i]``
    image pads for image i: ``APTQwen2VLProcessor(..., apt_tokens=True)``);
    without them the model computes exactly what the stock one does. Calling it
    again only changes ``position``.

    Raises
    ------
    TypeError
        Another model.
    ValueError
        An unknown position.
    RuntimeError
        A transformers without the precomputed vision inputs (``transformers.vision_utils``).
    """
    if position == "center":
        position = "centre"
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {', '.join(POSITIONS)}, got {position!r}")
    inner, outer = _inner(model)
    _check_hooks(inner)
    _swap(inner, _APTModel)
    _swap(inner.visual, _APTVision)
    for merger in _mergers(inner.visual):
        if not getattr(merger, "_apt_hooked", False):
            merger.register_forward_pre_hook(_merger_pre_hook)
            merger._apt_hooked = True
            merger._apt_plan = None
    inner._apt_position = position
    if outer:
        _swap(model, _APTGeneration)
    logger.debug("APT enabled on {} (position {})", type(model).__name__, position)
    return model


def is_apt_enabled(model) -> bool:
    """Whether :func:`enable_apt` has run on ``model`` (or the ``*Model`` inside it)."""
    try:
        inner, _ = _inner(model)
    except TypeError:
        return False
    return isinstance(inner, _APTModel)


# --- what the model loses ---------------------------------------------------------------------------


def covered_units(plan: APTPlan, grid_thw: torch.Tensor, merge_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The stock merge units (LLM tokens) each APT LLM token covers.

    Parameters
    ----------
    plan : APTPlan
    grid_thw : Tensor, (images, 3)
    merge_size : int

    Returns
    -------
    index : Tensor, int64, (L, S * S)
        Indices into the batch's stock image features (images concatenated,
        units in raster order); ``S`` is the largest span.
    valid : Tensor, bool, (L, S * S)
        Which entries of ``index`` are real (a token of span ``s`` covers ``s * s`` units).
    """
    device = plan.token_units.device
    grid = grid_thw.to(device).long()
    counts = torch.as_tensor(plan.llm_counts, device=device)
    image = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    units_w = (grid[:, 2] // merge_size)[image]
    offset = _offsets((grid[:, 1] // merge_size) * (grid[:, 2] // merge_size))[image]
    row, col = plan.token_units // units_w, plan.token_units % units_w
    top = int(plan.token_spans.max()) if len(plan.token_spans) else 1
    step = torch.arange(top, device=device)
    span = plan.token_spans.view(-1, 1, 1)
    valid = (step.view(1, top, 1) < span) & (step.view(1, 1, top) < span)
    rows = row.view(-1, 1, 1) + step.view(1, top, 1)
    index = rows * units_w.view(-1, 1, 1) + col.view(-1, 1, 1) + step.view(1, 1, top)
    index = torch.where(valid, index, index[:, :1, :1]) + offset.view(-1, 1, 1)
    return index.reshape(len(span), -1), valid.reshape(len(span), -1)


def _run_spec(selection):
    """A selection given as a RunSpec, ``"budget:0.3"`` (the command line's ``-m``) or images_kwargs."""
    from aptviz.compute.params import Method, RunSpec, parse_method_spec

    if isinstance(selection, RunSpec):
        return selection
    if isinstance(selection, dict):
        method = selection.get("patch_selection_method", "v1")
        return RunSpec(method, selection.get("alpha"), selection.get("thresholds"))
    method, values = parse_method_spec(selection)
    if method is Method.v1:
        return RunSpec(method, thresholds=values)
    if values is not None and len(values) != 1:
        raise ValueError(f"one alpha per selection, got {selection!r}")
    return RunSpec(method, None if values is None else values[0])


def feature_fidelity(model, processor, image, selections) -> dict[str, float]:
    """How close APT's image features are to the stock ones, per selection.

    For each APT LLM token, the cosine similarity between its image feature
    (the merger's output) and the mean of the stock features of the merge
    units it covers; averaged over the tokens. 1.0 means the LLM sees what it
    would see without APT (every selection with only ``P``-px patches gives
    exactly 1). Meaningful with real weights (see docs/qwen2vl.md).

    Parameters
    ----------
    model : a Qwen2-VL-family model (:func:`enable_apt` runs on it if it has not)
    processor : APTQwen2VLProcessor or APTQwen2VLImageProcessor
        Its image processor cuts the image.
    image : PIL image or uint8 array (H, W, 3)
    selections : iterable
        Each a :class:`aptviz.RunSpec`-like selection: ``"budget:0.3"``,
        ``"v2:1"``, ``"v1"``, a ``RunSpec``, or images_kwargs
        (``{"patch_selection_method": "budget", "alpha": 0.3}``).

    Returns
    -------
    dict of str to float
        ``{selection label: mean cosine similarity}``, e.g. ``{"budget_alpha0.3": 0.93}``.
    """
    inner, _ = _inner(model)
    if not isinstance(inner, _APTModel):
        enable_apt(model)
    ip = getattr(processor, "image_processor", processor)
    device = inner.visual.device
    merge = int(inner.visual.config.spatial_merge_size)
    cfg = inner.visual.config
    mine = (int(cfg.patch_size), merge, int(getattr(cfg, "temporal_patch_size", 2)))
    theirs = tuple(getattr(ip, k, None) for k in ("patch_size", "merge_size", "temporal_patch_size"))
    if theirs != mine:  # another family's processor (16 px patches for a 14 px tower) failed deep in the tower
        raise ValueError(
            f"the processor cuts patch, merge and temporal sizes {theirs} but the model's vision tower takes {mine}: "
            "use the model's own processor (APTQwen2VLProcessor.from_pretrained(path) or its preset)"
        )
    stock = None
    out: dict[str, float] = {}
    with torch.no_grad():
        for selection in selections:
            spec = _run_spec(selection)
            kwargs = {"patch_selection_method": spec.method.value, "alpha": 1.0 if spec.alpha is None else spec.alpha}
            if spec.thresholds is not None:
                kwargs["thresholds"] = list(spec.thresholds)
            batch = ip(images=[image], return_tensors="pt", **kwargs)
            grid = batch["image_grid_thw"].to(device)
            if stock is None:
                stock = inner.get_image_features(batch["pixel_values"].to(device), grid).pooler_output[0].float()
            apt = {name: batch[name].to(device) for name in APT_INPUTS}
            features = inner.get_apt_image_features(grid, **apt)
            index, valid = covered_units(features.apt_plan, grid, merge)
            weights = valid.to(stock.dtype)[..., None]
            mean = (stock[index] * weights).sum(1) / weights.sum(1)
            cos = F.cosine_similarity(features.pooler_output[0].double(), mean.double(), dim=-1)
            out[spec.label] = float(cos.mean())
            logger.debug("feature fidelity {}: {:.4f} over {} tokens", spec.label, out[spec.label], len(cos))
    return out
