import numpy as np
import pytest
from mmip_paper import CASES, simulate
from mmip_paper.phantoms import natural_image, shepp_logan

from multimodal_ip.errors import ConfigError
from multimodal_ip.io import build_problem, load_dataset, save_dataset

from .test_fluorescence import xrf_loop
from .test_ptychography import far_field_loop


def test_noise_free_file_equals_design_formulas(tmp_path):
    ds = simulate("multi-element", n=40, probe_size=16, step=12)
    save_dataset(tmp_path / "d.h5", ds)
    back = load_dataset(tmp_path / "d.h5")
    x, w = back.truth["x"], back.truth["w"]
    assert x.min() == pytest.approx(1) and x.max() == pytest.approx(2) and w.shape == (3, 40, 40)
    p = back.terms["ptychography"].arrays
    intens = np.abs(far_field_loop(x + 1j * w.sum(0), p["probe"], p["positions"])) ** 2
    np.testing.assert_allclose(p["data"], intens, rtol=1e-12, atol=1e-12 * intens.max())
    f = back.terms["fluorescence"].arrays
    np.testing.assert_allclose(f["kernel"], np.abs(p["probe"]) ** 2)
    np.testing.assert_allclose(f["data"], xrf_loop(w, f["kernel"], f["positions"]), rtol=1e-10)
    # full grid: window centred on each pixel
    assert f["positions"].shape == (1600, 2) and tuple(f["positions"][0]) == (-8, -8)


@pytest.mark.parametrize("level", [0.03, 0.10])
def test_relative_noise_level(level):
    clean = simulate("phantom", n=64, probe_size=16, step=8)
    noisy = simulate("phantom", n=64, probe_size=16, step=8, noise=level, seed=3)
    for term in ("ptychography", "fluorescence"):
        a, b = clean.terms[term].arrays["data"], noisy.terms[term].arrays["data"]
        rel = np.linalg.norm(b - a) / np.linalg.norm(a)
        assert 0.8 * level <= rel <= 1.2 * level, (term, rel)
    again = simulate("phantom", n=64, probe_size=16, step=8, noise=level, seed=3)
    assert np.array_equal(again.terms["ptychography"].arrays["data"], noisy.terms["ptychography"].arrays["data"])


def test_cases_table():
    assert CASES["phantom"]["n"] == 334 and CASES["phantom-large"]["probe_size"] == 100
    assert CASES["cameraman"]["balance_c"] == 0.05 and CASES["multi-element"]["n_elements"] == 3
    ds = simulate("cameraman", n=64, probe_size=16, step=16)
    assert ds.truth["x"].min() == pytest.approx(1) and ds.truth["w"].max() == pytest.approx(2)
    assert natural_image("cameraman", 244).shape == (244, 244) and shepp_logan(50).shape == (50, 50)
    with pytest.raises(ConfigError, match="unknown case"):
        simulate("nope")


def test_joint_problem_from_file_is_balanced(tmp_path, tiny_dataset):
    save_dataset(tmp_path / "t.h5", tiny_dataset)
    problem = build_problem(load_dataset(tmp_path / "t.h5"))
    assert set(problem.term_names) == {"ptychography", "fluorescence"}
    from multimodal_ip.testing import check_gradient

    # a generic point: at a flat object, |Psi| is exactly 0 outside the probe's annular spectrum,
    # where the amplitude misfit has a kink and no gradient
    check_gradient(problem, problem.space.full(1.0) + 0.1 * np.random.default_rng(0).random(problem.space.size))
    grads = problem.term_gradients(problem.space.full(1.0))
    ratio = np.linalg.norm(grads["fluorescence"]) / np.linalg.norm(grads["ptychography"])
    assert ratio == pytest.approx(0.01)


def test_float32_path_agrees_with_float64(tiny_dataset):
    from multimodal_ip import solve

    p64 = build_problem(tiny_dataset)
    p32 = build_problem(tiny_dataset, term_options={t: {"dtype": "float32"} for t in tiny_dataset.terms})
    v = p64.space.full(1.0) + 0.1 * np.random.default_rng(0).random(p64.space.size)
    f64, g64 = p64.value_and_gradient(v)
    f32, g32 = p32.value_and_gradient(v.astype(np.float32))
    assert g32.dtype == np.float32 and p32.terms[0].data.dtype == np.float32
    assert abs(f32 - f64) / f64 < 2e-3 and np.linalg.norm(g32 - g64) / np.linalg.norm(g64) < 2e-3
    e64 = solve(p64, p64.space.full(1.0), "lbfgs", maxiter=15).history["error_total"][-1]
    e32 = solve(p32, p32.space.full(1.0).astype(np.float32), "lbfgs", maxiter=15).history["error_total"][-1]
    assert abs(e32 - e64) < 0.01 * e64
