"""Tomography physics against a continuous model: the second-order quadrature of both paths (incident beam and
emitted lines), the detector convention, and the emitted lines' attenuation read from a file.

The reference here is written from docs/tomography.md alone: the maps are the bilinear interpolation of the pixels
(scipy's ``map_coordinates``, zero outside), integrated per ray at ``h`` = 1/16 pixel (trapezoid rule for the beam,
midpoint rule along each photon's path to the detector). ``python tests/plugins/test_tomography_physics.py``
prints the convergence table of docs/tomography.md.
"""

import sys

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

pytest.importorskip("mmip_tomography", reason="install plugins/tomography (make test does)")
from mmip_tomography import Geometry, TransmissionModel, XRFTomographyModel  # noqa: E402
from mmip_tomography.simulate import simulate  # noqa: E402

from multimodal_ip.errors import DataError  # noqa: E402
from multimodal_ip.io import TermData  # noqa: E402
from multimodal_ip.variables import Variable, VariableSpace  # noqa: E402


def smooth_phantom(n, ne=2):
    """``(ne, n, n)`` smooth maps (C-infinity window inside 0.8 of the half-width)."""
    y, x = np.mgrid[0:n, 0:n] / (n - 1) * 2 - 1
    r2 = x**2 + y**2
    win = np.where(r2 < 0.8**2, np.exp(-1 / np.maximum(1 - r2 / 0.8**2, 1e-9) + 1), 0.0)
    maps = [win * (0.6 + 0.4 * np.cos(2.5 * x + 1.5 * y)), win * np.exp(-((x + 0.3) ** 2 + (y - 0.2) ** 2) / 0.15),
            win * (0.5 + 0.5 * np.sin(3 * y))]
    return np.stack(maps[:ne])


def continuous_reference(w, mu, angles, bins, h=1 / 16, mu_line=None, detector=np.pi / 2):
    """``-log T`` ``(K, S)`` and the fluorescence ``(Ne, K, S)`` of the continuous model, per ray at step ``h``."""
    ne, n0, n1 = w.shape
    m = int(np.ceil(np.hypot(n0, n1) / h)) + 1
    tau = (np.arange(m) - (m - 1) / 2) * h
    u = np.arange(bins) - (bins - 1) / 2
    centre = np.array([(n0 - 1) / 2, (n1 - 1) / 2])
    mu_map = np.tensordot(mu, w, 1)
    line_maps = None if mu_line is None else np.tensordot(mu_line, w, 1)
    xrf, logt = np.zeros((ne, len(angles), bins)), np.zeros((len(angles), bins))
    for k, th in enumerate(angles):
        beam, across = np.array([np.sin(th), np.cos(th)]), np.array([np.cos(th), -np.sin(th)])
        coords = (centre[:, None, None] + u[None, :, None] * across[:, None, None]
                  + tau[None, None, :] * beam[:, None, None]).reshape(2, -1)
        mus = map_coordinates(mu_map, coords, order=1, mode="grid-constant").reshape(bins, m)
        cum = np.concatenate([np.zeros((bins, 1)), np.cumsum(0.5 * h * (mus[:, 1:] + mus[:, :-1]), axis=1)], axis=1)
        logt[k] = cum[:, -1]
        out = np.ones((ne, bins, m))
        if line_maps is not None:  # each sample's photons, along d to beyond the slice, midpoint rule
            d = np.array([np.sin(th + detector), np.cos(th + detector)])
            for e in range(ne):
                total = np.zeros(bins * m)
                for j in range(0, m, 64):
                    steps = (np.arange(j, min(j + 64, m)) + 0.5) * h
                    q = coords[:, :, None] + steps[None, None, :] * d[:, None, None]
                    total += h * map_coordinates(line_maps[e], q.reshape(2, -1), order=1,
                                                 mode="grid-constant").reshape(bins * m, -1).sum(1)
                out[e] = np.exp(-total).reshape(bins, m)
        for e in range(ne):
            f = map_coordinates(w[e], coords, order=1, mode="grid-constant").reshape(bins, m) * np.exp(-cum) * out[e]
            xrf[e, k] = h * (f.sum(1) - 0.5 * (f[:, 0] + f[:, -1]))
    return logt, xrf


def _case(n, k, absorption=3.0):
    """The smooth phantom, ``k`` angles over a turn, ``mu`` scaled so that the thickest ray attenuates by
    ``exp(-absorption)``; line coefficients as Fe + Zn K-alpha (Zn's line ~2.4x the beam's attenuation in Fe)."""
    w = smooth_phantom(n)
    angles = np.linspace(0, 2 * np.pi, k, endpoint=False) + 0.1
    mu = np.array([1.0, 0.6])
    mu *= absorption / (-np.log(TransmissionModel(Geometry.make((n, n), angles), mu).forward(w))).max()
    return w, angles, mu, np.array([[1.0, 0.6], [2.4, 1.4]]) * mu[0]


def _errors(w, angles, mu, steps, mu_line=None, detector=np.pi / 2, h=1 / 16):
    n = w.shape[1]
    logt, xrf = continuous_reference(w, mu, angles, n, h=h, mu_line=mu_line, detector=detector)
    rows = []
    for step in steps:
        geom = Geometry.make((n, n), angles, step=step)
        t = -np.log(TransmissionModel(geom, mu).forward(w))
        f = XRFTomographyModel(geom, mu, mu_line=mu_line, detectors=(detector,)).forward(w)
        rows.append((np.linalg.norm(t - logt) / np.linalg.norm(logt), np.linalg.norm(f - xrf) / np.linalg.norm(xrf)))
    return np.array(rows)


def test_beam_path_is_second_order_and_within_5e_3_at_the_default_step():
    w, angles, mu, _ = _case(32, 4)
    err = _errors(w, angles, mu, (2.0, 1.0, 0.5))
    assert np.all(err[1] <= 5e-3), err  # -log T and XRF at the default step
    ratio = err[1:, 1] / err[:-1, 1]  # XRF error per halved step
    assert np.all(ratio < 0.35), (err, ratio)  # second order: ~1/4 (first order, the old exclusive sum: ~1/2)


@pytest.mark.parametrize("detector", [np.pi / 2, -2.0])
def test_line_path_is_second_order_and_within_5e_3_at_the_default_step(detector):
    w, angles, mu, b = _case(32, 3)
    err = _errors(w, angles, mu, (2.0, 1.0, 0.5), mu_line=b, detector=detector, h=1 / 16)
    assert np.all(err[1] <= 5e-3), err
    assert err[2, 1] < 0.35 * err[1, 1] and err[1, 1] < 0.35 * err[0, 1], err


def test_detector_convention_ninety_degrees_sees_photons_going_to_higher_rows():
    """At theta = 0 a detector at +90 degrees receives photons travelling toward increasing rows: absorber below the
    centre row dims it, the same absorber above does not (and the detector at -90 degrees sees the reverse)."""
    n = 21
    w = np.zeros((2, n, n))
    w[0, 10, 10] = 1.0  # one emitter at the centre
    below, above = w.copy(), w.copy()
    below[1, 13:, :], above[1, :8, :] = 1.0, 1.0  # absorber (element 1) below / above, outside the beam's row
    geom = Geometry.make((n, n), [0.0])
    b = np.array([[0.0, 0.5], [0.0, 0.0]])
    out = {}
    for name, maps in (("below", below), ("above", above)):
        for det in (np.pi / 2, -np.pi / 2):
            out[name, det] = XRFTomographyModel(geom, [0.0, 0.0], mu_line=b, detectors=(det,)).forward(maps)[0].sum()
    free = XRFTomographyModel(geom, [0.0, 0.0]).forward(w)[0].sum()
    assert out["above", np.pi / 2] == pytest.approx(free, rel=1e-12)
    assert out["below", -np.pi / 2] == pytest.approx(free, rel=1e-12)
    # the path crosses 8 pixels of absorber (rows 13..20, half a pixel of bilinear ramp at each end): exp(-0.5 * 8)
    assert out["below", np.pi / 2] / free == pytest.approx(np.exp(-0.5 * 8), rel=1e-3)
    assert out["above", -np.pi / 2] / free == pytest.approx(np.exp(-0.5 * 8), rel=1e-3)


def _term(tmp_ne=2, n=9, **extra):
    rng = np.random.default_rng(3)
    geom = Geometry.make((n, n), np.linspace(0, 2 * np.pi, 4, endpoint=False))
    mu = np.array([0.1, 0.05])
    arrays = {"data": XRFTomographyModel(geom, mu).forward(rng.random((tmp_ne, n, n))),
              "angles": np.asarray(geom.angles), "mu": mu}
    attrs = {"object_shape": np.array([n, n]), "elements": ["Fe", "Zn"]}
    for k, v in extra.items():
        (arrays if isinstance(v, np.ndarray) and k != "detector_angles" else attrs)[k] = v
    return TermData("xrf", "xrf-tomography", arrays, attrs), VariableSpace([Variable("w", (tmp_ne, n, n))])


def _modality():
    from mmip_tomography.plugin import XRFTomography

    return XRFTomography()


def test_file_schema_switches_the_line_attenuation_on_and_the_option_off():
    b = np.array([[0.1, 0.2], [0.3, 0.05]])
    td, space = _term(mu_line=b, detector_angles=np.array([np.pi / 2, 2.0]))
    op = _modality().build_term(td, space).operator
    assert len(op.exits) == 2 and np.allclose(op.b, b)
    assert [p.detector_angle for p in op.exits] == [np.pi / 2, 2.0]
    assert _modality().build_term(td, space, line_attenuation="off").operator.exits == []
    td, space = _term()  # no line described: off by default, required by "on"
    assert _modality().build_term(td, space).operator.exits == []
    with pytest.raises(DataError, match="mu_line"):
        _modality().build_term(td, space, line_attenuation="on")


def test_line_coefficients_from_xraylib_when_the_file_names_the_lines():
    xraylib = pytest.importorskip("xraylib")
    td, space = _term(lines="KA", mu_scale=1e-3)
    op = _modality().build_term(td, space).operator
    zn_ka = xraylib.LineEnergy(30, xraylib.KA_LINE)
    assert op.b[1, 0] == pytest.approx(xraylib.CS_Total(26, zn_ka) * 1e-3)  # Zn K-alpha through Fe
    assert op.b[1, 0] > 2 * xraylib.CS_Total(26, 12.0) * 1e-3  # above the Fe K edge: > 2x the beam's


@pytest.mark.parametrize(("extra", "message"), [
    ({"mu_line": np.ones((2, 3))}, "mu_line"),
    ({"mu_line": -np.ones((2, 2))}, "mu_line"),
    ({"mu_line": np.ones((2, 2)), "detector_angles": np.array([np.nan])}, "detector_angles"),
    ({"mu_line": np.ones((2, 2)), "line_matrix": -np.ones((2, 9, 9))}, "line_matrix"),
])
def test_bad_line_schema_is_refused_by_name(extra, message):
    td, space = _term(**extra)
    with pytest.raises(DataError, match=message):
        _modality().build_term(td, space)


def convergence_table():
    """The table of docs/tomography.md: relative error against the continuous model per ray step."""
    w, angles, mu, b = _case(48, 12)
    steps = (2.0, 1.0, 0.5, 0.25)
    beam = _errors(w, angles, mu, steps)
    lines = _errors(w, angles[::3], mu, steps, mu_line=b)
    print("| step (px) | -log T | XRF, beam attenuation | XRF, beam + emitted lines (90°) |")
    print("|---|---|---|---|")
    for i, step in enumerate(steps):
        print(f"| {step:g} | {beam[i, 0]:.2e} | {beam[i, 1]:.2e} | {lines[i, 1]:.2e} |")


if __name__ == "__main__":
    convergence_table()


def test_simulation_without_xraylib_fails_in_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    from multimodal_ip.cli import main

    monkeypatch.setitem(sys.modules, "xraylib", None)  # import xraylib raises ImportError
    code = main(["simulate", "tomo-phantom", "--n", "8", "--angles", "3", "-o", str(tmp_path / "s.h5")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "mmip-tomography[xraylib]" in err, err
    assert not (tmp_path / "s.h5").exists()
    # the coefficients given: no xraylib needed (and no line attenuation without mu_line)
    assert "mu_line" not in simulate("tomo-phantom", n=8, n_angles=3, mu=[0.1, 0.2]).terms["xrf"].arrays


def test_simulation_is_a_finer_model_than_the_reconstruction():
    """Default data (oversample 2): the truth's own-model prediction differs from the data by the model error
    (a few percent), the oversample=1 data equal it, and the emitted lines' attenuation is in the data and the file."""
    ds = simulate("tomo-absorbing", n=24, n_angles=12)
    crime = simulate("tomo-absorbing", n=24, n_angles=12, oversample=1)
    x = ds.terms["xrf"]
    geom = Geometry.make((24, 24), x.arrays["angles"])
    own = XRFTomographyModel(geom, x.arrays["mu"], mu_line=x.arrays["mu_line"]).forward(ds.truth["w"])
    gap = np.linalg.norm(x.arrays["data"] - own) / np.linalg.norm(own)
    assert 0.005 < gap < 0.1, gap
    c = crime.terms["xrf"].arrays
    own = XRFTomographyModel(geom, c["mu"], mu_line=c["mu_line"]).forward(crime.truth["w"])
    np.testing.assert_allclose(c["data"], own, rtol=1e-12, atol=1e-14)
    free = XRFTomographyModel(geom, c["mu"]).forward(crime.truth["w"])
    assert np.linalg.norm(free - own) > 0.3 * np.linalg.norm(own)  # the lines matter on the absorbing case
    off = simulate("tomo-absorbing", n=24, n_angles=12, oversample=1, line_attenuation="off")
    np.testing.assert_allclose(off.terms["xrf"].arrays["data"], free, rtol=1e-12, atol=1e-14)


def test_simulation_from_given_fine_maps():
    from multimodal_ip.errors import ConfigError

    fine = smooth_phantom(20)  # (2, 20, 20) on the 2x finer grid: a 10 x 10 slice
    ds = simulate("tomo-phantom", n_angles=4, maps=fine, mu=[0.1, 0.2], mu_line=np.full((2, 2), 0.1))
    np.testing.assert_allclose(ds.truth["w"], fine.reshape(2, 10, 2, 10, 2).mean(axis=(2, 4)))
    assert ds.terms["xrf"].arrays["data"].shape == (2, 4, 10)
    with pytest.raises(ConfigError, match="maps"):
        simulate("tomo-phantom", n_angles=4, maps=fine[:, :19, :19], mu=[0.1, 0.2])


def test_sinogram_figure_skips_a_method_without_maps(tmp_path):
    """A method whose result lacks ``w`` (e.g. a ptychography-only variable set) is left out of the figure; it
    raised KeyError before."""
    pytest.importorskip("matplotlib")
    from mmip_tomography.report import plot_sinograms

    from multimodal_ip.io import build_problem

    ds = simulate("tomo-absorbing", n=16, n_angles=8, oversample=1)
    problem = build_problem(ds)
    w = ds.truth["w"]
    assert plot_sinograms(problem, {"joint": {"w": w}, "other": {"x": w[0]}}, tmp_path / "s.png") == tmp_path / "s.png"
    assert (tmp_path / "s.png").stat().st_size > 0
    assert plot_sinograms(problem, {"other": {"x": w[0]}}, tmp_path / "t.png") is None
