"""Photon-weighted likelihoods and physical coupling (issue 10, items 3 and 4)."""

import numpy as np
import pytest
from mmip_paper import simulate
from mmip_ptychography import absorption_coupling, parse_coupling

from multimodal_ip.cli import main
from multimodal_ip.errors import ConfigError, DataError
from multimodal_ip.io import build_problem, save_dataset
from multimodal_ip.losses import Amplitude, Poisson


def test_poisson_likelihood_takes_its_weights_from_the_photon_statistics(tiny_dataset):
    p = build_problem(tiny_dataset, likelihood="poisson")
    pt, xrf = (t for t in p.terms)
    photons = {k: tiny_dataset.terms[k].attrs["photons_per_unit"] for k in ("ptychography", "fluorescence")}
    assert p.weights == {"ptychography": 1.0, "fluorescence": 1.0}  # no beta
    assert isinstance(pt.loss, Amplitude) and pt.loss.scale == pytest.approx(4 * photons["ptychography"])
    assert isinstance(xrf.loss, Poisson) and xrf.loss.photons_per_unit == photons["fluorescence"]
    # the amplitude likelihood is the variance-stabilised Poisson one: 2 sum (sqrt(N) - sqrt(lambda))^2 in counts
    y = pt.operator.forward(p._term_input(0, p.start()))
    counts, model = photons["ptychography"] * pt.data, photons["ptychography"] * np.abs(y) ** 2
    assert pt.loss.value(y, pt.data) == pytest.approx(2 * np.sum((np.sqrt(counts) - np.sqrt(model)) ** 2))
    exact = build_problem(tiny_dataset, likelihood="poisson", term_options={"ptychography": {"loss": "poisson"}})
    assert isinstance(exact.terms[0].loss, Poisson) and exact.terms[0].loss.scale == 1.0
    with pytest.raises(ConfigError, match="likelihood"):
        build_problem(tiny_dataset, likelihood="gaussian")


def test_poisson_likelihood_needs_the_photon_scale(tiny_dataset):
    from dataclasses import replace

    td = tiny_dataset.terms["ptychography"]
    ds = replace(tiny_dataset, terms={**tiny_dataset.terms, "ptychography": replace(td, attrs={})})
    with pytest.raises(DataError, match="photons_per_unit"):
        build_problem(ds, likelihood="poisson")


def test_absorption_coupling_from_xraylib():
    pytest.importorskip("xraylib")
    import xraylib

    a = absorption_coupling(["Fe", "Zn", 29], 8.8)
    assert a[0] == 1.0
    assert a[1] == pytest.approx(xraylib.CS_Total(30, 8.8) / xraylib.CS_Total(26, 8.8))
    raw = absorption_coupling(["Fe"], 8.8, normalize=False)
    assert raw[0] == pytest.approx(0.5 * xraylib.CS_Total(26, 8.8))
    np.testing.assert_allclose(parse_coupling("xraylib:8.8:Fe,Zn,Cu", 3), a)
    with pytest.raises(ConfigError, match="Unobtainium|chemical symbol|element"):
        absorption_coupling(["Unobtainium"], 8.8)


def test_parse_coupling_forms():
    assert parse_coupling(None, 2) is None and parse_coupling("ones", 2) is None
    np.testing.assert_array_equal(parse_coupling("1,0.5", 2), [1.0, 0.5])
    np.testing.assert_array_equal(parse_coupling([2, 3], 2), [2.0, 3.0])
    for bad, match in (("1,2,3", "2 finite"), ("abc", "coupling must be"), ("xraylib:hot:Fe,Zn", "energy"),
                       ("xraylib:8.8:Fe", "need 2 element")):
        with pytest.raises(ConfigError, match=match):
            parse_coupling(bad, 2)


def test_coupling_enters_the_object():
    ds = simulate("multi-element", seed=0, n=40, probe_size=16, step=8, n_elements=2)
    p = build_problem(ds, terms=["ptychography"], coupling="1,0.25")
    rng = np.random.default_rng(0)
    x, w = rng.random((40, 40)), rng.random((2, 40, 40))
    v = p.space.pack({"x": x, "w": w})
    ones = build_problem(ds, terms=["ptychography"])
    equivalent = p.space.pack({"x": x, "w": np.stack([w[0] + 0.25 * w[1], 0 * w[1]])})
    np.testing.assert_allclose(p.terms[0].operator.forward(v), ones.terms[0].operator.forward(equivalent))
    with pytest.raises(ConfigError, match="takes the option 'coupling'"):
        build_problem(ds, terms=["fluorescence"], coupling="1,0.25")


def test_cli_likelihood_and_coupling(tmp_path, capsys):
    ds = simulate("multi-element", seed=0, noise=0.1, n=40, probe_size=16, step=8, n_elements=2)
    path = tmp_path / "d.h5"
    save_dataset(path, ds)
    out = str(tmp_path / "r.h5")
    assert main(["reconstruct", str(path), "-o", out, "--iterations", "3", "--likelihood", "poisson"]) == 0
    assert main(["reconstruct", str(path), "-o", out, "--iterations", "3", "--coupling", "1,0.5"]) == 0
    assert main(["reconstruct", str(path), "-o", out, "--iterations", "3", "--coupling", "1,0.5,3"]) == 2
    assert "2 finite coefficient" in capsys.readouterr().err
    assert main(["reconstruct", str(path), "-o", out, "--iterations", "3", "--coupling", "xraylib:8.8"]) == 2
    assert "E0" in capsys.readouterr().err  # the simulated elements have no chemical symbols
    if pytest.importorskip("xraylib"):
        assert main(["reconstruct", str(path), "-o", out, "--iterations", "3", "--coupling",
                     "xraylib:8.8:Fe,Zn"]) == 0


def test_simulated_coupling_is_stored_and_used(tmp_path):
    pytest.importorskip("xraylib")
    path = tmp_path / "c.h5"
    assert main(["simulate", "multi-element", "--n", "40", "--probe-size", "16", "--step", "8", "--n-elements", "2",
                 "--elements", "Fe,Zn", "--coupling", "xraylib:8.8", "-o", str(path)]) == 0
    from multimodal_ip.io import load_dataset

    ds = load_dataset(path)
    coef = ds.terms["ptychography"].attrs["coupling"]
    np.testing.assert_allclose(coef, absorption_coupling(["Fe", "Zn"], 8.8))
    # the file's coupling makes the noise-free data consistent with the truth; the paper's ones do not
    for spec, fits in ((None, True), ("ones", False)):
        p = build_problem(ds, terms=["ptychography"], coupling=spec)
        value = p.value(p.space.pack(ds.truth))
        assert (value < 1e-20) == fits
    assert main(["simulate", "multi-element", "--n", "40", "--probe-size", "16", "--step", "8", "--n-elements", "2",
                 "--elements", "Fe", "-o", str(path)]) == 2


@pytest.mark.parametrize("options", [{"likelihood": "poisson"}, {"coupling": "1,0.3"},
                                     {"likelihood": "poisson", "refine": ("probe",)}])
def test_gradients_of_the_new_options(options):
    from multimodal_ip.testing import check_gradient

    ds = simulate("multi-element", seed=1, noise=0.05, n=32, probe_size=16, step=8, n_elements=2)
    p = build_problem(ds, **options)
    rng = np.random.default_rng(0)
    v = p.start() + 0.05 * rng.standard_normal(p.space.size)
    assert check_gradient(p, v, rng=rng) > 1.8


def test_poisson_likelihood_refuses_a_modality_without_one():
    pytest.importorskip("mmip_toy")
    from multimodal_ip.io import Dataset, TermData
    from multimodal_ip.variables import Variable

    rng = np.random.default_rng(0)
    ds = Dataset([Variable("x", (3,))], {"t": TermData("t", "toy", {"matrix": rng.random((4, 3)),
                                                                    "data": rng.random(4)})}, {}, {})
    build_problem(ds)  # the toy modality works with its own loss
    with pytest.raises(ConfigError, match="'toy' .* has no photon-count likelihood"):
        build_problem(ds, likelihood="poisson")


def test_run_file_keys(tmp_path):
    ds = simulate("multi-element", seed=0, noise=0.1, n=40, probe_size=16, step=8, n_elements=2)
    path = tmp_path / "d.h5"
    save_dataset(path, ds)
    run = tmp_path / "run.toml"
    run.write_text('iterations = 3\nlikelihood = "poisson"\ncoupling = [1.0, 0.5]\nrefine = ["probe"]\n'
                   'refine_after = 1\n')
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(path), "-o", str(out), "--config", str(run)]) == 0
    from multimodal_ip.io import load_result

    cfg = load_result(out)["config"]
    assert cfg["coupling"] == "1.0,0.5" and cfg["likelihood"] == "poisson" and cfg["refine"] == ["probe"]
    run.write_text('likelihood = "gaussian"\n')
    assert main(["reconstruct", str(path), "-o", str(out), "--config", str(run)]) == 2
