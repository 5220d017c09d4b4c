"""The validation study's cases: the paper's two (``mmip_paper``) and two from an independent simulator (loops over
scan positions with numpy's FFT, scipy's correlation for the XRF maps) with a probe, overlap and objects the
project's simulator does not make. Imported by ``study.py`` and ``stopping.py`` (this folder)."""

import argparse

import numpy as np
from mmip_paper import simulate
from mmip_paper.cases import poisson_noise
from scipy.ndimage import gaussian_filter
from scipy.signal import correlate

from multimodal_ip.io import Dataset, TermData
from multimodal_ip.variables import Variable


def smooth_field(n, rng, sigma):
    f = gaussian_filter(rng.standard_normal((n, n)), sigma)
    return 1 + (f - f.min()) / (f.max() - f.min())


def probe_of(kind, npx):
    r = np.arange(npx) - (npx - 1) / 2
    rr = r[:, None] ** 2 + r[None, :] ** 2
    if kind == "gaussian":
        return np.exp(-rr / (2 * (npx / 6) ** 2)) * np.exp(1j * 2.5 * rr / npx**2 * np.pi)
    pinhole = (rr <= (npx / 3) ** 2).astype(float)  # a pinhole propagated a little: soft edge and curvature
    return gaussian_filter(pinhole, 1.5) * np.exp(1j * 4.0 * rr / npx**2 * np.pi)


def new_case(kind, noise, seed, scale):
    n = int(160 * scale)
    npx, step = (int(48 * scale), max(int(8 * scale), 2)) if kind == "smooth" else (int(40 * scale),
                                                                                   max(int(12 * scale), 2))
    objects = np.random.default_rng(1000 + (kind == "sparse"))  # the sample does not change with the noise seed
    x = smooth_field(n, objects, 4 * scale + 1)
    if kind == "smooth":
        w = smooth_field(n, objects, 6 * scale + 1)[None]
    else:
        yy, xx = np.mgrid[:n, :n]
        w = np.zeros((1, n, n))
        for cy, cx in objects.uniform(0.1 * n, 0.9 * n, (12, 2)):
            w[0][(yy - cy) ** 2 + (xx - cx) ** 2 <= (0.02 * n) ** 2] = 1.0
    probe = probe_of("gaussian" if kind == "smooth" else "pinhole", npx)
    corners = np.arange(0, n - npx + 1, step)
    positions = np.array([(r, c) for r in corners for c in corners], dtype=float)
    z = x + 1j * w[0]
    intens = np.empty((len(positions), npx, npx))
    for j, (r, c) in enumerate(positions.astype(int)):  # one position at a time, numpy's FFT
        intens[j] = np.abs(np.fft.fftshift(np.fft.fft2(probe * z[r : r + npx, c : c + npx], norm="ortho"))) ** 2
    kernel = np.abs(probe) ** 2
    off0, off1 = kernel.shape[0] - 1 - kernel.shape[0] // 2, kernel.shape[1] - 1 - kernel.shape[1] // 2
    xrf = np.stack([correlate(w[e], kernel, mode="full", method="direct")[off0 : off0 + n, off1 : off1 + n].ravel()
                    for e in range(len(w))])
    rng = np.random.default_rng(seed)
    intens_noisy, p_ptycho = poisson_noise(intens, noise, rng)
    xrf_noisy, p_xrf = poisson_noise(xrf, noise, rng)
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    xrf_pos = np.stack([rows.ravel() - kernel.shape[0] // 2, cols.ravel() - kernel.shape[1] // 2], 1).astype(float)
    terms = {"ptychography": TermData("ptychography", "ptychography",
                                      {"data": intens_noisy, "probe": probe, "positions": positions},
                                      {"photons_per_unit": p_ptycho}),
             "fluorescence": TermData("fluorescence", "fluorescence",
                                      {"data": xrf_noisy, "kernel": kernel, "positions": xrf_pos},
                                      {"photons_per_unit": p_xrf, "grid_shape": np.array([n, n])})}
    return Dataset([Variable("x", (n, n)), Variable("w", (1, n, n))], terms, {"x": x, "w": w},
                   {"case": kind, "balance_c": 0.01, "reference_term": "ptychography"})


def dataset(case, noise, seed, scale=1.0):
    """One dataset: ``phantom``, ``cameraman`` (the paper's) or ``smooth``, ``sparse`` (this file's simulator),
    shrunk by ``scale``."""
    if case in ("smooth", "sparse"):
        return new_case(case, noise, seed, scale)
    if scale == 1.0:
        return simulate(case, seed=seed, noise=noise)
    size = {"phantom": (334, 64, 30), "cameraman": (244, 64, 20)}[case]
    n, npx, step = (max(int(v * scale), 4) for v in size)
    return simulate(case, seed=seed, noise=noise, n=n, probe_size=npx, step=step)


def study_parser(doc, align_help):
    """The command line both study scripts share (cases, noise levels, seeds, iterations, size, ``--align``); each
    adds its own flags to it."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[1])
    parser.add_argument("--cases", default="phantom,cameraman,smooth,sparse")
    parser.add_argument("--noise", default="0.03,0.1")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every case (0.5: half the size; CI)")
    parser.add_argument("--align", action="store_true", help=align_help)
    return parser


def pairs(args):
    """The (case, noise) pairs of a parsed command line, in table order."""
    return [(case, float(noise)) for case in args.cases.split(",") for noise in args.noise.split(",")]
