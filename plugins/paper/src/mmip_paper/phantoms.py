__all__ = ["shepp_logan", "ellipse_phantom", "random_ellipses", "natural_image", "scale_to_range"]

from importlib import resources

import numpy as np

# modified Shepp-Logan (Toft): intensity, semi-axes a, b, centre x0, y0, angle (degrees)
SHEPP_LOGAN = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0), (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18), (-0.2, 0.16, 0.41, -0.22, 0.0, 18),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0), (0.1, 0.046, 0.046, 0.0, 0.1, 0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0), (0.1, 0.046, 0.023, -0.08, -0.605, 0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0), (0.1, 0.023, 0.046, 0.06, -0.605, 0),
)


def ellipse_phantom(n, ellipses):
    """Sum of filled ellipses on an ``n x n`` grid spanning [-1, 1]^2 (y up).

    Parameters
    ----------
    n : :obj:`int`
        Number of pixels along each axis.
    ellipses : sequence of :obj:`tuple`
        One ``(intensity, a, b, x0, y0, angle)`` per ellipse: the value added inside it, its semi-axes, its centre
        (in the [-1, 1] coordinates) and its rotation in degrees.

    Returns
    -------
    img : :obj:`numpy.ndarray`
        The ``(n, n)`` float image; overlapping ellipses add up.
    """
    y, x = np.mgrid[1 : -1 : n * 1j, -1 : 1 : n * 1j]
    img = np.zeros((n, n))
    for amp, a, b, x0, y0, phi in ellipses:
        t = np.deg2rad(phi)
        xr = (x - x0) * np.cos(t) + (y - y0) * np.sin(t)
        yr = -(x - x0) * np.sin(t) + (y - y0) * np.cos(t)
        img[(xr / a) ** 2 + (yr / b) ** 2 <= 1] += amp
    return img


def shepp_logan(n):
    """The modified Shepp-Logan phantom, ``n x n``.

    Parameters
    ----------
    n : :obj:`int`
        Number of pixels along each axis.

    Returns
    -------
    img : :obj:`numpy.ndarray`
        The ``(n, n)`` float phantom (Toft's modified intensities, in [0, 1]).
    """
    return ellipse_phantom(n, SHEPP_LOGAN)


def random_ellipses(n, seed, count=12):
    """A Shepp-Logan-type phantom: a head-like outer ellipse and ``count`` random inner ones (fixed ``seed``).

    Parameters
    ----------
    n : :obj:`int`
        Number of pixels along each axis.
    seed : :obj:`int`
        Seed of the random generator: the same seed gives the same phantom.
    count : :obj:`int`, optional
        Number of random inner ellipses.

    Returns
    -------
    img : :obj:`numpy.ndarray`
        The ``(n, n)`` float phantom.
    """
    rng = np.random.default_rng(seed)
    ellipses = [(1.0, 0.72, 0.9, 0.0, 0.0, 0), (-0.6, 0.65, 0.83, 0.0, -0.02, 0)]
    for _ in range(count):
        ellipses.append((rng.uniform(-0.3, 0.4), rng.uniform(0.03, 0.3), rng.uniform(0.03, 0.3),
                         rng.uniform(-0.45, 0.45), rng.uniform(-0.6, 0.6), rng.uniform(0, 180)))
    return ellipse_phantom(n, ellipses)


def scale_to_range(img, lo=1.0, hi=2.0):
    """Affine map of ``img`` onto [lo, hi].

    Parameters
    ----------
    img : :obj:`numpy.ndarray`
        Real image (anything :func:`numpy.asarray` converts to float).
    lo : :obj:`float`, optional
        Value of the image's minimum after the map.
    hi : :obj:`float`, optional
        Value of the image's maximum after the map.

    Returns
    -------
    scaled : :obj:`numpy.ndarray`
        Float image of the same shape; a constant image maps to ``lo`` everywhere.
    """
    img = np.asarray(img, dtype=float)
    span = img.max() - img.min()
    return lo + (hi - lo) * ((img - img.min()) / span if span > 0 else np.zeros_like(img))


def natural_image(name, n):
    """A packaged grey image (``cameraman`` or ``astronaut``) resampled to ``n x n`` (bilinear).

    Parameters
    ----------
    name : :obj:`str`
        Name of the image in the package's ``data/natural_images.npz``: ``"cameraman"`` or ``"astronaut"``.
    n : :obj:`int`
        Number of pixels along each axis of the result.

    Returns
    -------
    img : :obj:`numpy.ndarray`
        The ``(n, n)`` float image, grey levels scaled to [0, 1].
    """
    with resources.files("mmip_paper").joinpath("data/natural_images.npz").open("rb") as fh:
        img = np.load(fh)[name].astype(float) / 255.0
    if img.shape[0] == n:
        return img
    from scipy.ndimage import zoom

    return zoom(img, n / img.shape[0], order=1)[:n, :n]
