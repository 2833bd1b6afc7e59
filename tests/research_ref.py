"""The APT research code's Laplacian and upsample-MSE importance, restated in torch (test only).

From ``src/models/entropy_utils.py`` of the APT research code
(``compute_patch_laplacian_vectorized`` and ``compute_patch_mse_batched``),
kept line for line in what they compute, including their own choices:
float32 throughout, zero padding of overhanging cells (no PAD), the ``/255``
only when the image's maximum exceeds 1, and explicit per-scale
``scale_factors`` for the reconstruction (aptviz uses ``patch_size / ps``,
so callers pass ``[1, 0.5, 0.25]``).

Nothing here shares code with aptviz.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def chw(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (3, H, W) float32 in [0, 255], as the research code takes images."""
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).to(torch.float32)


def compute_patch_laplacian_vectorized(image, patch_size=16, num_scales=2, aggregate="mean", pad_mode="reflect"):
    if len(image.shape) == 3:
        if image.shape[0] == 3:
            image = 0.2989 * image[0] + 0.5870 * image[1] + 0.1140 * image[2]
        else:
            image = image[0]
    image = image / 255.0 if image.max() > 1.0 else image
    laplacian_kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]], device=image.device).view(
        1, 1, 3, 3
    )
    padded_image = F.pad(image.unsqueeze(0).unsqueeze(0), (1, 1, 1, 1), mode=pad_mode)
    laplacian_response = F.conv2d(padded_image, laplacian_kernel)
    laplacian_response = torch.abs(laplacian_response.squeeze())
    laplacian_maps = {}
    H, W = image.shape
    patch_sizes = [patch_size * (2**i) for i in range(num_scales)]
    for patch_size in patch_sizes:
        num_patches_h = (H + patch_size - 1) // patch_size
        num_patches_w = (W + patch_size - 1) // patch_size
        pad_h = num_patches_h * patch_size - H
        pad_w = num_patches_w * patch_size - W
        padded_response = F.pad(laplacian_response, (0, pad_w, 0, pad_h), mode="constant", value=0)
        patches = padded_response.unfold(0, patch_size, patch_size).unfold(1, patch_size, patch_size)
        if aggregate == "mean":
            patch_laplacian = patches.mean(dim=(2, 3))
        elif aggregate == "max":
            patch_laplacian = patches.amax(dim=(2, 3))
        elif aggregate == "std":
            patch_laplacian = patches.std(dim=(2, 3))
        else:
            raise ValueError(f"Unknown aggregation method: {aggregate}")
        laplacian_maps[patch_size] = patch_laplacian
    return laplacian_maps


def compute_patch_mse_batched(images, patch_size=16, num_scales=3, scale_factors=None, aggregate="mean"):
    batch_size, channels, H, W = images.shape
    if images.max() > 1.0:
        normalized_images = images / 255.0
    else:
        normalized_images = images.clone()
    if scale_factors is None:
        scale_factors = [0.5, 0.5, 0.25]
    if len(scale_factors) < num_scales:
        scale_factors.extend([scale_factors[-1]] * (num_scales - len(scale_factors)))
    patch_sizes = [patch_size * (2**i) for i in range(num_scales)]
    batch_mse_maps = {}
    for ps, scale_factor in zip(patch_sizes, scale_factors):
        img_down = F.interpolate(normalized_images, scale_factor=scale_factor, mode="bilinear", align_corners=False)
        img_up = F.interpolate(img_down, scale_factor=1.0 / scale_factor, mode="bilinear", align_corners=False)
        if img_up.shape[-2:] != (H, W):
            img_up = F.interpolate(img_up, size=(H, W), mode="bilinear", align_corners=False)
        mse_per_pixel = F.mse_loss(normalized_images, img_up, reduction="none")
        mse_map = mse_per_pixel.mean(dim=1)
        num_patches_h = (H + ps - 1) // ps
        num_patches_w = (W + ps - 1) // ps
        pad_h = num_patches_h * ps - H
        pad_w = num_patches_w * ps - W
        padded_mse = F.pad(mse_map, (0, pad_w, 0, pad_h), mode="constant", value=0)
        patches = padded_mse.unfold(1, ps, ps).unfold(2, ps, ps)
        if aggregate == "mean":
            patch_mse = patches.mean(dim=(3, 4))
        elif aggregate == "max":
            patch_mse = patches.amax(dim=(3, 4))
        elif aggregate == "std":
            patch_mse = patches.std(dim=(3, 4))
        else:
            raise ValueError(f"Unknown aggregation method: {aggregate}")
        batch_mse_maps[ps] = patch_mse
    return batch_mse_maps


def research_maps(img: np.ndarray, measure: str, aggregate: str, patch_size=14, num_scales=3) -> dict[int, np.ndarray]:
    """The research code's maps for an HxWx3 uint8 image, float64 NumPy, no PAD."""
    x = chw(img)
    if measure == "laplacian":
        maps = compute_patch_laplacian_vectorized(x, patch_size, num_scales, aggregate)
    elif measure == "upsample-mse":
        factors = [1.0 / 2**i for i in range(num_scales)]
        maps = {
            ps: m[0] for ps, m in compute_patch_mse_batched(x[None], patch_size, num_scales, factors, aggregate).items()
        }
    else:
        raise ValueError(measure)
    return {ps: m.reshape(m.shape[-2:]).double().numpy() for ps, m in maps.items()}
