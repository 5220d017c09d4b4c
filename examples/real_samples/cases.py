"""Cases of docs/real_samples.md, written with plain numpy and h5py (not with the project's simulator): an object whose
phase is ``a_true * w + m``, ``m`` a matrix that does not fluoresce, and XRF maps that see ``w`` only.

    python examples/real_samples/cases.py out.h5 --matrix 0.3 [--rough | --sharp] [--coupling-error 0.2] [--elements 2]
"""

__all__ = ["write_case"]

import argparse

import h5py
import numpy as np


def _ellipses(n, rng, count):
    """``count`` random filled ellipses added on a zero image, scaled to [0, 1]."""
    r, c = np.mgrid[0:n, 0:n] / n
    img = np.zeros((n, n))
    for _ in range(count):
        r0, c0 = rng.uniform(0.2, 0.8, 2)
        a, b = rng.uniform(0.05, 0.3, 2)
        t = rng.uniform(0, np.pi)
        u, v = (r - r0) * np.cos(t) + (c - c0) * np.sin(t), -(r - r0) * np.sin(t) + (c - c0) * np.cos(t)
        img += rng.uniform(0.3, 1.0) * ((u / a) ** 2 + (v / b) ** 2 <= 1)
    return (img - img.min()) / max(img.max() - img.min(), 1e-12)


def _matrix(n, rng, rough, sharp=False):
    """A non-negative map of mean 1: broad Gaussian bumps (smooth), 4 x 4 px blocks of random values (rough), or
    five random discs and rectangles of a quarter to half the object, on a floor of 0.2 (sharp edges)."""
    if sharp:
        r, c = np.mgrid[0:n, 0:n] / n
        m = np.full((n, n), 0.2)
        for k in range(5):
            r0, c0 = rng.uniform(0.1, 0.9, 2)
            s = rng.uniform(0.12, 0.25)
            inside = np.hypot(r - r0, c - c0) <= s if k % 2 else (abs(r - r0) <= s) & (abs(c - c0) <= s * 0.7)
            m += rng.uniform(0.5, 1.0) * inside
    elif rough:
        blocks = rng.random((n // 4 + 1, n // 4 + 1))
        m = np.kron(blocks, np.ones((4, 4)))[:n, :n]
    else:
        r, c = np.mgrid[0:n, 0:n] / n
        m = np.zeros((n, n))
        for _ in range(4):
            r0, c0 = rng.uniform(0, 1, 2)
            s = rng.uniform(0.2, 0.4)
            m += np.exp(-((r - r0) ** 2 + (c - c0) ** 2) / (2 * s**2))
    return m / m.mean()


def _probe(npx):
    """A zone plate's probe out of focus: an annular pupil (spatial frequencies 1/30 to 1/10 per pixel, a central
    stop of a third of the lens) times a defocus phase of 1.42 rad x (npx / 32) at the lens's edge, inverse FFT."""
    k = np.fft.fftshift(np.fft.fftfreq(npx))
    kk = np.hypot(k[:, None], k[None, :]) / 0.1
    pupil = ((kk <= 1) & (kk >= 1 / 3)) * np.exp(-1j * 1.417 * (npx / 32) * kk**2)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil), norm="ortho"))


def _noisy(model, level, rng):
    """Poisson counts at a photon scale giving ``level`` relative noise: ``(noisy, photons_per_unit)``."""
    p = float(model.sum() / (level**2 * (model**2).sum()))
    return rng.poisson(model * p) / p, p


def write_case(path, n=128, npx=32, step=8, matrix=0.0, rough=False, coupling_error=0.0, noise=0.03, seed=0,
               sharp=False, elements=1):
    """Write one case: ``x``, ``w`` in [1, 2], the phase ``(1 + coupling_error) sum_e a_e w_e + matrix * mean(a w) *
    m`` (``a`` = 1, 0.5 for two elements; the file says ``a``).

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The HDF5 file written.
    n, npx, step : :obj:`int`, optional
        Object size, probe window, raster step (px).
    matrix : :obj:`float`, optional
        Mean of the non-fluorescing matrix as a fraction of mean(w).
    rough : :obj:`bool`, optional
        A rough (4 px blocks) matrix instead of a smooth one.
    coupling_error : :obj:`float`, optional
        The true coupling is ``1 + coupling_error``; the file says 1.
    noise : :obj:`float`, optional
        Relative Poisson noise of both modalities.
    seed : :obj:`int`, optional
        Seed of the objects and the noise.
    sharp : :obj:`bool`, optional
        A matrix of discs and rectangles with sharp edges instead of a smooth one.
    elements : :obj:`int`, optional
        1 or 2 element maps (the second with coefficient 0.5, its own XRF line).

    Returns
    -------
    path : the path written
    """
    rng = np.random.default_rng(seed)
    x = 1 + _ellipses(n, rng, 8)
    w = np.stack([1 + _ellipses(n, rng, 6) for _ in range(elements)])
    coupling = [1.0, 0.5][:elements]
    tied = sum(a * we for a, we in zip(coupling, w))
    m = matrix * tied.mean() * _matrix(n, rng, rough, sharp) if matrix else np.zeros((n, n))
    z = x + 1j * ((1 + coupling_error) * tied + m)
    probe = _probe(npx)
    corners = np.arange(0, n - npx + 1, step)
    pos = np.array([(r, c) for r in corners for c in corners], dtype=float)
    patches = np.stack([z[int(r):int(r) + npx, int(c):int(c) + npx] for r, c in pos])
    intens = np.abs(np.fft.fftshift(np.fft.fft2(probe * patches, norm="ortho"), axes=(-2, -1))) ** 2
    kernel = np.abs(probe) ** 2
    kh, kw = kernel.shape
    padded = np.pad(w, ((0, 0), (kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2)))
    xrf = sum(kernel[a, b] * padded[:, a:a + n, b:b + n] for a in range(kh) for b in range(kw))  # window at each px
    grid = np.array([(r - kh // 2, c - kw // 2) for r in range(n) for c in range(n)], dtype=float)
    intens_noisy, p_ptycho = _noisy(intens, noise, rng) if noise > 0 else (intens, np.inf)
    xrf_noisy, p_xrf = _noisy(xrf.reshape(elements, -1), noise, rng) if noise > 0 else (xrf.reshape(elements, -1),
                                                                                          np.inf)
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "multimodal_ip", 1
        f.attrs["matrix_fraction"], f.attrs["coupling_error"], f.attrs["rough"] = matrix, coupling_error, rough
        f["truth/x"], f["truth/w"] = x, w
        p = f.create_group("terms/ptychography")
        p.attrs["modality"], p.attrs["photons_per_unit"] = "ptychography", p_ptycho
        p.attrs["coupling"] = coupling
        p["data"], p["probe"], p["positions"] = intens_noisy, probe, pos
        g = f.create_group("terms/fluorescence")
        g.attrs["modality"], g.attrs["photons_per_unit"] = "fluorescence", p_xrf
        g.attrs["elements"], g.attrs["grid_shape"] = np.array([f"E{e}" for e in range(elements)], dtype="S"), \
            np.array([n, n])
        g["data"], g["kernel"], g["positions"] = xrf_noisy, kernel, grid
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--matrix", type=float, default=0.0)
    ap.add_argument("--rough", action="store_true")
    ap.add_argument("--sharp", action="store_true")
    ap.add_argument("--elements", type=int, default=1, choices=(1, 2))
    ap.add_argument("--coupling-error", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    write_case(a.output, n=a.n, matrix=a.matrix, rough=a.rough, coupling_error=a.coupling_error, seed=a.seed,
               sharp=a.sharp, elements=a.elements)
