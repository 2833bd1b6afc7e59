"""Structural similarity (SSIM) of two RGB images, as scikit-image defines it, with OpenCV.

The definition is exactly
``skimage.metrics.structural_similarity(a, b, channel_axis=-1,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255)`` (Wang et al. 2004):

* per channel, in float64: local means, variances and the covariance are
  gaussian-weighted averages (sigma 1.5, truncated at 3.5 sigma: an 11-tap
  kernel ``exp(-x**2 / (2 sigma**2))`` normalised to sum 1, as
  ``scipy.ndimage.gaussian_filter`` builds it), applied separably with
  reflect borders that repeat the edge pixel (scipy's ``mode="reflect"``,
  OpenCV's ``BORDER_REFLECT``);
* ``S = (2 ux uy + C1)(2 vxy + C2) / ((ux**2 + uy**2 + C1)(vx + vy + C2))``
  with ``C1 = (0.01 * 255)**2``, ``C2 = (0.03 * 255)**2`` and population
  (co)variances;
* the SSIM of a channel is the mean of ``S`` after cropping 5 px (the
  filter radius) at every border; the image's SSIM is the mean over channels.

Images smaller than the 11 x 11 window are refused with a ValueError (as
scikit-image refuses them); aptviz's resized images are at least 28 px a side.

:class:`SsimReference` filters the reference once, so that comparing several
views of one image (a model view and a uniform baseline per selection) costs
three filterings per view instead of five.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SIGMA", "WIN_SIZE", "SsimReference", "gaussian_kernel", "ssim"]

SIGMA = 1.5
TRUNCATE = 3.5
RADIUS = int(TRUNCATE * SIGMA + 0.5)  # 5, as scipy.ndimage computes it
WIN_SIZE = 2 * RADIUS + 1  # 11; also the width of the border left out of the mean
DATA_RANGE = 255.0
BAND_ROWS = 48  # rows of the SSIM map summed at once (the sums of the scores are the bands' sums, in order)
BLOCK_BANDS = 3  # bands filtered at once: their halo rows are filtered once, not once per band (20 % faster)
C1 = (0.01 * DATA_RANGE) ** 2
C2 = (0.03 * DATA_RANGE) ** 2


def gaussian_kernel(sigma: float = SIGMA, radius: int = RADIUS) -> np.ndarray:
    """The 1-D float64 gaussian of ``scipy.ndimage.gaussian_filter1d``: ``2 radius + 1`` taps, sum 1.

    Examples
    --------
    >>> k = gaussian_kernel()
    >>> k.shape, round(float(k.sum()), 12), bool(k[5] == k.max())
    ((11,), 1.0, True)
    """
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


_KERNEL32 = gaussian_kernel().astype(np.float32)


def _blur(a: np.ndarray) -> np.ndarray:
    """Separable gaussian of every channel of ``a`` (float32, any channel count), reflect borders."""
    import cv2

    return cv2.sepFilter2D(a, cv2.CV_32F, _KERNEL32, _KERNEL32, borderType=cv2.BORDER_REFLECT)


def _as_rgb(image, name: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"SSIM needs an H x W x 3 uint8 image; {name} is {a.dtype} of shape {a.shape}")
    h, w = a.shape[:2]
    if h < WIN_SIZE or w < WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {WIN_SIZE} x {WIN_SIZE} px (its window); {name} is {w} x {h}")
    return a


class SsimReference:
    """A reference image for SSIM: its local statistics are filtered once per :meth:`scores` call.

    Each image scored against it costs three filterings (of its difference
    ``d`` from the reference, ``d**2`` and ``x * d``) instead of five; the
    reference's two are done once per call of :meth:`scores`, band by band.
    Filtering runs in float32, three times faster than float64 in OpenCV, on
    values the error cannot grow with:

    * the reference is shifted by its rounded mean per channel (variances and
      covariances do not change under a common shift);
    * the other image enters through ``d = y - x`` (exact in float32), with
      ``vy = vx + vd + 2 cov(x, d)`` and ``vxy = vx + cov(x, d)``: the
      reference's own rounding appears in both halves of the contrast term and
      cancels, and the new terms' rounding scales with ``d``, not with 255.

    The result is within 1e-6 of scikit-image's float64 SSIM on photos, noise
    and flat or two-tone images (measured in the tests), well inside the 1e-4
    that aptviz promises.

    Parameters
    ----------
    reference : ndarray
        ``(H, W, 3)`` uint8, at least 11 x 11.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    >>> ref = SsimReference(a)
    >>> round(ref.score(a), 6), round(ref.score(255 - a), 4)
    (1.0, -0.9612)
    """

    def __init__(self, reference):
        import cv2

        a = _as_rgb(reference, "the reference")
        self.image = a
        # integers, so that shifted values stay exact in float32 (OpenCV's scalar arithmetic: NumPy
        # broadcasting over a last axis of 3 is ten times slower)
        self._shift = tuple(float(round(m)) for m in cv2.mean(a)[:3]) + (0.0,)

    def score(self, other) -> float:
        """SSIM of ``other`` (same shape, uint8) against the reference.

        Raises
        ------
        ValueError
            When ``other`` is not uint8 RGB of the reference's shape.
        """
        return self.scores([other])[0]

    def scores(self, others) -> list[float]:
        """SSIM of each image against the reference, in one pass over the image.

        The image is done in blocks of :data:`BLOCK_BANDS` bands of
        :data:`BAND_ROWS` rows, each block filtered with its ``RADIUS`` rows
        above and below (always inside the image: only cropped rows are asked
        for), so that a block's arrays stay in the CPU's cache; the
        reference's block is filtered once for all the images. Reflected
        border values land only in the cropped margin. Every value of the map
        is the one filtering band by band gives (each row is filtered with the
        same taps wherever its block starts), and each score adds up the
        bands' sums in order: the block size changes no bit of a score.

        Raises
        ------
        ValueError
            When an image is not uint8 RGB of the reference's shape.
        """
        images = [_as_rgb(o, "the image") for o in others]
        for b in images:
            if b.shape != self.image.shape:
                raise ValueError(f"SSIM compares images of one size: {b.shape[1]}x{b.shape[0]} against "
                                 f"{self.image.shape[1]}x{self.image.shape[0]}")  # fmt: skip
        r, (h, w) = RADIUS, self.image.shape[:2]
        sums = np.zeros((len(images), 3))
        tops = range(r, h - r, BAND_ROWS)
        for k in range(0, len(tops), BLOCK_BANDS):  # a block of bands: every value as filtered band by band
            first, last = tops[k], min(tops[min(k + BLOCK_BANDS, len(tops)) - 1] + BAND_ROWS, h - r)
            bands = [(t - first, min(t + BAND_ROWS, h - r) - first) for t in tops[k : k + BLOCK_BANDS]]
            ref = self._band(first, last)
            for i, b in enumerate(images):
                for part in _band_sums(ref, b[first - r : last + r], self.image[first - r : last + r], bands):
                    sums[i] += part
        # as scikit-image: the mean of each channel over the cropped window (sums in float64), then of the channels
        return [float(m) for m in (sums / ((h - 2 * r) * (w - 2 * r))).mean(axis=1)]

    def _band(self, top: int, bottom: int) -> dict:
        """The reference's shifted values and local statistics for rows ``top:bottom`` (with their halo)."""
        import cv2

        r = RADIUS
        x = cv2.subtract(self.image[top - r : bottom + r], self._shift, dtype=cv2.CV_32F)
        band = slice(r, r + bottom - top)  # the band's own rows inside the filtered block
        ux = _blur(x)[band]
        vx2_c2 = _blur(x * x)[band]
        vx2_c2 -= ux * ux
        vx2_c2 *= 2
        vx2_c2 += np.float32(C2)  # 2 vx + C2
        mx = cv2.add(ux, self._shift)  # the true local means, for the luminance term
        mx2_c1 = mx * mx
        mx2_c1 += np.float32(C1)
        return {"x": x, "ux": ux, "mx": mx, "mx2_c1": mx2_c1, "vx2_c2": vx2_c2}


def _band_sums(ref: dict, b: np.ndarray, a: np.ndarray, bands: list[tuple[int, int]]) -> list[np.ndarray]:
    """Per-channel sums of the SSIM map of ``b`` against ``a`` (a block of bands with its halo) over the cropped
    columns, one per band (``bands``: its rows in the block)."""
    import cv2

    r = RADIUS
    band = slice(r, b.shape[0] - r)
    d = cv2.subtract(b, a, dtype=cv2.CV_32F)  # y - x, exact
    if not cv2.countNonZero(d.reshape(d.shape[0], -1)):  # the band as the reference's (a model view's finest
        ud = np.zeros(ref["ux"].shape, np.float32)  # patches): its three filterings are exact zeros, not computed
        udd, uxd = ud.copy(), ud.copy()
    else:
        ud = _blur(d)[band]
        udd = _blur(d * d)[band]
        uxd = _blur(np.multiply(ref["x"], d, out=d))[band]
    t = ref["ux"] * ud  # in place from here, few passes over memory (comments say what a buffer holds next)
    uxd -= t  # cov(x, d)
    uxd *= 2
    uxd += ref["vx2_c2"]  # 2 vxy + C2 = 2 vx + 2 cov(x, d) + C2
    np.multiply(ud, ud, out=t)
    udd -= t  # vd
    udd += uxd  # vx + vy + C2 = (2 vxy + C2) + vd
    ud += ref["mx"]  # my
    np.multiply(ud, ud, out=t)
    t += ref["mx2_c1"]  # mx**2 + my**2 + C1
    udd *= t  # the denominator
    np.multiply(ref["mx"], ud, out=t)
    t *= 2
    t += np.float32(C1)  # 2 mx my + C1
    t *= uxd
    t /= udd  # the SSIM map
    return [np.array(cv2.sumElems(t[y0:y1, r : t.shape[1] - r])[:3]) for y0, y1 in bands]


def ssim(a, b) -> float:
    """SSIM of two ``(H, W, 3)`` uint8 images, exactly as scikit-image's (see the module docstring).

    Parameters
    ----------
    a, b : ndarray
        Images of the same shape, at least 11 x 11 px.

    Returns
    -------
    float
        In ``[-1, 1]``; 1 (to float32 rounding) for identical images.

    Raises
    ------
    ValueError
        For images that are not uint8 RGB, differ in shape, or are smaller than the 11 x 11 window.

    Examples
    --------
    >>> a = np.zeros((16, 16, 3), np.uint8)
    >>> b = a.copy(); b[8:, :, :] = 255
    >>> round(ssim(a, b), 6)
    0.000171
    >>> ssim(np.zeros((7, 7, 3), np.uint8), np.zeros((7, 7, 3), np.uint8))
    Traceback (most recent call last):
    ...
    ValueError: SSIM needs images of at least 11 x 11 px (its window); the reference is 7 x 7
    """
    return SsimReference(a).score(b)
