"""``--stop validation`` refits on all the data to the iteration the held-out run chose (issue 28 item 4), and
validation fractions that leave too few held-out or fit values are refused (issue 36 item 8)."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.signal import correlate

from multimodal_ip import cli
from multimodal_ip.cli import main
from multimodal_ip.config import _read_toml
from multimodal_ip.errors import ConfigError
from multimodal_ip.io import load_result
from multimodal_ip.validation import MIN_HELD_OUT, check_fraction, term_holdout

ROOT = Path(__file__).resolve().parents[1]


def _smooth(n, rng, sigma):
    f = gaussian_filter(rng.standard_normal((n, n)), sigma)
    return 1 + (f - f.min()) / (f.max() - f.min())


def _poisson(clean, noise, rng):
    """Counts with relative noise ``noise`` at the mean value, back in the clean data's units; photons per unit."""
    p = 1.0 / (noise**2 * clean.mean())
    return rng.poisson(clean * p) / p, p


def write_smooth_case(path, n=64, npx=20, step=4, noise=0.1, seed=2):
    """A README-schema file written with plain numpy and h5py, not by the project's simulator: smooth random
    objects, a Gaussian probe with a defocus phase (raster scan, 80 % overlap), far-field intensities computed one
    position at a time with numpy's FFT, and the XRF map on the full object grid from scipy's correlation with
    |probe|^2; Poisson noise of ``noise`` at the mean value; no /variables (inferred)."""
    objects = np.random.default_rng(2026)
    x, w = _smooth(n, objects, 2.0), _smooth(n, objects, 3.0)[None]
    r = np.arange(npx) - (npx - 1) / 2
    rr = r[:, None] ** 2 + r[None, :] ** 2
    probe = np.exp(-rr / (2 * (npx / 5) ** 2)) * np.exp(2.5j * np.pi * rr / npx**2)
    corners = np.arange(0, n - npx + 1, step)
    positions = np.array([(a, b) for a in corners for b in corners], dtype=float)
    z = x + 1j * w[0]
    intens = np.stack([np.abs(np.fft.fftshift(np.fft.fft2(probe * z[a:a + npx, b:b + npx], norm="ortho"))) ** 2
                       for a, b in positions.astype(int)])
    kernel = np.abs(probe) ** 2
    o = npx - 1 - npx // 2
    xrf = correlate(w[0], kernel, mode="full", method="direct")[o:o + n, o:o + n].ravel()[None]
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    xrf_positions = np.stack([rows.ravel() - npx // 2, cols.ravel() - npx // 2], 1).astype(float)
    rng = np.random.default_rng(seed)
    terms = {"ptychography": (*_poisson(intens, noise, rng), {"probe": probe, "positions": positions}, {}),
             "fluorescence": (*_poisson(xrf, noise, rng), {"kernel": kernel, "positions": xrf_positions},
                              {"grid_shape": np.array([n, n])})}
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "multimodal_ip"
        f.attrs["format_version"] = 1
        for name, (data, photons, arrays, attrs) in terms.items():
            g = f.create_group(f"terms/{name}")
            g.attrs["modality"] = name
            g.attrs["photons_per_unit"] = photons
            for k, v in attrs.items():
                g.attrs[k] = v
            g.create_dataset("data", data=data)
            for k, v in arrays.items():
                g.create_dataset(k, data=v)
        f.create_dataset("truth/x", data=x)
        f.create_dataset("truth/w", data=w)


@pytest.fixture(scope="module")
def smooth_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("refit") / "smooth.h5"
    write_smooth_case(path)
    return path


FLAGS = ["--iterations", "200", "--checkpoint-every", "0", "--dtype", "float64"]


def _heldout_history(path) -> dict:
    with h5py.File(path) as f:
        g = f["results/validation_run/history"]
        return {k: g[k][()] for k in g}


@pytest.fixture(scope="module")
def runs(smooth_file, tmp_path_factory):
    """A plain 200-iteration run, ``--stop validation`` (refit) and ``--stop validation --no-refit``."""
    out = tmp_path_factory.mktemp("runs")
    for name, extra in (("plain", []), ("refit", ["--stop", "validation"]),
                        ("held", ["--stop", "validation", "--no-refit"])):
        assert main(["reconstruct", str(smooth_file), "-o", str(out / f"{name}.h5"), *FLAGS, *extra]) == 0
    return {name: load_result(out / f"{name}.h5") for name in ("plain", "refit", "held")} | {"folder": out}


def test_refit_is_within_3_percent_of_the_best_a_plain_run_passes_through(runs):
    """The issue's acceptance on a file the project's simulator did not make; without the refit the held-out fit
    misses it (it was fitted on 90 % of the measurements)."""
    best = float(np.min(runs["plain"]["history"]["error_total"]))
    refit = float(runs["refit"]["history"]["error_total"][-1])
    held = runs["held"]
    kept = float(held["history"]["error_total"][held["config"]["returned_iteration"]])
    assert refit <= 1.03 * best
    assert kept > 1.03 * best and refit < kept


def test_refit_is_the_plain_run_stopped_at_the_chosen_iteration(runs):
    """The refit runs the whole-data problem for the held-out run's best iteration count: the same iterate a plain
    run passes through there (same problem, same solver path)."""
    plain, refit, held = runs["plain"], runs["refit"], runs["held"]
    chosen = held["config"]["returned_iteration"]
    assert 0 < chosen < 200
    hist = refit["history"]
    assert int(hist["iteration"][-1]) == chosen and "validation_total" not in hist
    np.testing.assert_allclose(hist["error_total"], plain["history"]["error_total"][:chosen + 1], rtol=1e-10)
    np.testing.assert_allclose(hist["objective"], plain["history"]["objective"][:chosen + 1], rtol=1e-10)


def test_result_records_both_runs(runs):
    refit, held = runs["refit"], runs["held"]
    run = refit["config"]["validation_run"]
    assert run["returned_iteration"] == held["config"]["returned_iteration"]
    assert run["status"] == held["status"] == "validation" and run["iterations"] > run["returned_iteration"]
    assert refit["config"]["refit"]["iterations"] == run["returned_iteration"]
    assert refit["config"]["refit"]["status"] == refit["status"] == "maxiter" and refit["config"]["refit"]["wall_s"] > 0
    assert refit["config"]["returned_iteration"] is None  # the refit's last iterate, like any plain run
    # the held-out run's whole history is in the file beside the refit's, equal to the --no-refit run's
    recorded = _heldout_history(runs["folder"] / "refit.h5")
    for k in ("iteration", "validation_total", "error_total", "objective"):
        np.testing.assert_array_equal(recorded[k], held["history"][k])
    # --no-refit keeps today's result: the held-out run's best iterate, status validation, no second history
    assert "validation_run" not in held["config"] and "refit" not in held["config"]
    with h5py.File(runs["folder"] / "held.h5") as f:
        assert "validation_run" not in f["results"]


def test_cli_lines(smooth_file, tmp_path, capsys):
    capsys.readouterr()
    assert main(["reconstruct", str(smooth_file), "-o", str(tmp_path / "r.h5"), "--iterations", "30",
                 "--checkpoint-every", "0", "--stop", "validation", "--patience", "3"]) == 0
    out = capsys.readouterr().out
    assert "refit on all the data to iteration" in out and "the best validation of the held-out run (" in out
    # --no-refit without --stop validation: one warning line, and it runs
    assert main(["reconstruct", str(smooth_file), "-o", str(tmp_path / "p.h5"), "--iterations", "3",
                 "--checkpoint-every", "0", "--no-refit"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does nothing without --stop validation" in err[0]


def test_run_file_refit_false_and_tune_refit_share_one_path(smooth_file, tmp_path, capsys):
    """``mmip tune --refit``'s refit.h5, ``mmip reconstruct --stop validation`` at the chosen setting and
    ``--config chosen.toml`` are the same iterate; ``chosen_validation.toml`` keeps the held-out fit (refit = false)."""
    flags = ["--iterations", "60", "--dtype", "float64"]
    assert main(["tune", str(smooth_file), "-o", str(tmp_path / "tune"), "--c", "0.01", "--refit", *flags]) == 0
    chosen = _read_toml(tmp_path / "tune" / "chosen.toml")
    held_toml = _read_toml(tmp_path / "tune" / "chosen_validation.toml")
    assert held_toml["stopping"]["refit"] is False and "refine_after" not in chosen
    common = ["--checkpoint-every", "0"]
    assert main(["reconstruct", str(smooth_file), "-o", str(tmp_path / "r.h5"), "--balance-c", "0.01",
                 "--stop", "validation", *flags, *common]) == 0
    assert main(["reconstruct", str(smooth_file), "-o", str(tmp_path / "c.h5"), "--config",
                 str(tmp_path / "tune" / "chosen.toml"), *common]) == 0
    assert main(["reconstruct", str(smooth_file), "-o", str(tmp_path / "v.h5"), "--config",
                 str(tmp_path / "tune" / "chosen_validation.toml"), *common]) == 0
    tuned = load_result(tmp_path / "tune" / "refit.h5")
    for name in ("r.h5", "c.h5"):
        other = load_result(tmp_path / name)
        for v in ("x", "w"):
            np.testing.assert_allclose(other["variables"][v], tuned["variables"][v], rtol=0, atol=1e-12)
    assert load_result(tmp_path / "r.h5")["config"]["refit"]["iterations"] == chosen["iterations"]
    held = load_result(tmp_path / "v.h5")["config"]  # the held-out fit, no refit
    assert "refit" not in held and held["returned_iteration"] == chosen["iterations"]


def test_refit_keeps_the_refinement_schedule_of_the_held_out_run():
    """A refit of 40 iterations chosen in a 200-iteration run refines the calibration after 66, as that run did
    (not after 40 // 3): the refit follows the held-out run's path on all the data."""
    cfg = {"iterations": 200, "refine_after": None, "refine": ["probe"], "stopping": {"rule": "validation"}}
    refit = cli._refit_config(cfg, 40)
    plain = {"rule": "iterations"}
    assert refit["iterations"] == 40 and refit["refine_after"] == 66 and refit["stopping"] == plain
    assert cli._refit_config(dict(cfg, refine=[]), 0) == dict(cfg, refine=[], iterations=1, stopping=plain)


def _interrupt_after_checkpoints(monkeypatch, count):
    import multimodal_ip.io.results as results

    real, written = results.save_checkpoint, []

    def save(*a, **k):
        real(*a, **k)
        written.append(1)
        if len(written) == count:
            raise KeyboardInterrupt

    monkeypatch.setattr(results, "save_checkpoint", save)


@pytest.mark.parametrize("where", ["held-out run", "refit"])
def test_interrupted_and_resumed_gives_the_uninterrupted_result(smooth_file, tmp_path, monkeypatch, where):
    """Interrupted in the held-out run or in the refit (which writes no checkpoint: the held-out run's last one is
    kept), ``--resume`` ends with the uninterrupted result; a checkpoint of a refitting run resumes with
    ``--no-refit`` too (the refit setting does not change the held-out run)."""
    flags = ["--iterations", "20", "--checkpoint-every", "2", "--stop", "validation", "--patience", "3",
             "--dtype", "float64"]
    full, out = tmp_path / "full.h5", tmp_path / "out.h5"
    ckpt = out.with_name(out.name + ".ckpt.h5")
    assert main(["reconstruct", str(smooth_file), "-o", str(full), *flags]) == 0
    with monkeypatch.context() as m:
        if where == "refit":
            def interrupted(*a, **k):
                raise KeyboardInterrupt
            m.setattr(cli.reconstruct, "_refit", interrupted)
        else:
            _interrupt_after_checkpoints(m, 2)
        assert main(["reconstruct", str(smooth_file), "-o", str(out), *flags]) == 130
    assert ckpt.is_file() and not out.exists()
    held_ckpt = ckpt.read_bytes()
    assert main(["reconstruct", str(smooth_file), "-o", str(out), *flags, "--resume"]) == 0
    a, b = load_result(full), load_result(out)
    for v in ("x", "w"):
        np.testing.assert_array_equal(b["variables"][v], a["variables"][v])
    assert b["config"]["validation_run"]["returned_iteration"] == a["config"]["validation_run"]["returned_iteration"]
    assert not ckpt.exists()
    ckpt.write_bytes(held_ckpt)  # the same checkpoint, resumed without the refit: the held-out fit
    assert main(["reconstruct", str(smooth_file), "-o", str(tmp_path / "n.h5"), *flags, "--no-refit"]) == 0
    n_ckpt = tmp_path / "n.h5.ckpt.h5"
    n_ckpt.write_bytes(held_ckpt)
    assert main(["reconstruct", str(smooth_file), "-o", str(tmp_path / "n.h5"), *flags, "--no-refit",
                 "--resume"]) == 0
    kept = load_result(tmp_path / "n.h5")["config"]  # the held-out fit, no refit
    assert "refit" not in kept and kept["returned_iteration"] == a["config"]["validation_run"]["returned_iteration"]


def test_mpi_ranks_refit_like_one_process(tmp_path, mpiexec):
    data = tmp_path / "d.h5"
    write_smooth_case(data, n=48, npx=16, step=4)
    flags = ["--iterations", "30", "--stop", "validation", "--patience", "3", "--dtype", "float64",
             "--checkpoint-every", "0"]
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r1.h5"), *flags]) == 0
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data),
                           "-o", str(tmp_path / "r2.h5"), *flags], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = load_result(tmp_path / "r1.h5"), load_result(tmp_path / "r2.h5")
    assert two["config"]["mpi_ranks"] == 2 and two["config"]["validation_run"] == {
        **one["config"]["validation_run"], "wall_s": two["config"]["validation_run"]["wall_s"]}
    assert two["config"]["refit"]["iterations"] == one["config"]["refit"]["iterations"]
    for v in ("x", "w"):
        np.testing.assert_allclose(two["variables"][v], one["variables"][v], rtol=1e-8, atol=1e-10)


# ---- issue 36 item 8: fractions that leave too few held-out or fit values ------------------------------------
@pytest.mark.parametrize(("fraction", "message"), [("1e-9", "holds out about"), ("0.9999", "(0, 0.5]"),
                                                   ("0.6", "(0, 0.5]")])
def test_degenerate_fractions_exit_2_in_one_line(smooth_file, tmp_path, capsys, fraction, message):
    before = smooth_file.read_bytes()
    capsys.readouterr()
    assert main(["reconstruct", str(smooth_file), "-o", str(tmp_path / "r.h5"), "--iterations", "3",
                 "--stop", "validation", "--validation-fraction", fraction]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "r.h5").exists() and smooth_file.read_bytes() == before
    run = tmp_path / "run.toml"
    run.write_text(f'[stopping]\nrule = "validation"\nfraction = {fraction}\n')
    assert main(["reconstruct", str(smooth_file), "-o", str(tmp_path / "r.h5"), "--config", str(run),
                 "--iterations", "3"]) == 2
    assert message in capsys.readouterr().err


def test_fraction_bounds_and_counts_agree_over_parts():
    """Half may be held out, no more; a term must expect MIN_HELD_OUT held-out values, counted over the whole term
    so every part or MPI rank of it decides alike (one with no positions too)."""
    from multimodal_ip.io import TermData
    from multimodal_ip.modality import capabilities, split_term
    from multimodal_ip.plugins import get_registry

    assert check_fraction(0.5) == 0.5
    for bad in (0.50001, 0.9999, 0, -0.1, float("nan"), "x"):
        with pytest.raises(ConfigError, match=r"\(0, 0.5\]"):
            check_fraction(bad)
    info = capabilities(get_registry().get("modality", "fluorescence"))
    td = TermData("fluorescence", "fluorescence", {"data": np.ones((2, 30)), "kernel": np.ones((3, 3)),
                                                   "positions": np.zeros((30, 2))}, {})
    assert term_holdout(td, info, MIN_HELD_OUT / 60, 0).shape == (2, 30)  # exactly 10 expected
    parts = [split_term(td, info.split_axes, k, 4) for k in range(4)]
    for fraction in (0.9 * MIN_HELD_OUT / 60, 1e-9):
        for t in (td, *parts, split_term(td, info.split_axes, 0, 31)):
            with pytest.raises(ConfigError, match="holds out about .* of its 60 measured values"):
                term_holdout(t, info, fraction, 0)
    tiny = TermData("fluorescence", "fluorescence", {"data": np.ones((1, 8))}, {})
    with pytest.raises(ConfigError, match="too small to hold values out"):
        term_holdout(tiny, info, 0.5, 0)


def test_refit_measurement_example_small():
    """examples/validation/refit.py, the measurement of docs/validation.md, at a small size."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples/validation/refit.py"), "--cases", "phantom",
                           "--noise", "0.1", "--seeds", "1", "--scale", "0.3", "--iterations", "20"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT / "examples/validation")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| phantom | 0.1 |"))
    refit, held = (float(c.split("/")[0]) for c in row.strip("|").split("|")[3:5])
    assert refit >= 1.0 - 1e-12 and held >= 1.0 - 1e-12  # nothing beats the best along the plain run


def test_compare_refits_every_method_like_reconstruct(runs, smooth_file, tmp_path):
    """``mmip compare --stop validation`` refits each method on all the data to its own chosen iteration (it
    returned the held-out fits before): its joint row is the reconstruct refit's error, ``--no-refit`` the held-out
    run's returned iterate."""
    import json

    errors = {}
    for name, extra in (("refit", []), ("held", ["--no-refit"])):
        out = tmp_path / name
        flags = [f for f in FLAGS if f not in ("--checkpoint-every", "0")]  # compare writes no checkpoints
        assert main(["compare", str(smooth_file), "-o", str(out), *flags, "--stop", "validation", *extra]) == 0
        errors[name] = json.loads((out / "errors.json").read_text())
    refit = float(runs["refit"]["history"]["error_total"][-1])
    held = runs["held"]
    kept = float(held["history"]["error_total"][held["config"]["returned_iteration"]])
    assert errors["refit"]["joint"]["error_total"] == pytest.approx(refit, rel=1e-8)
    assert errors["held"]["joint"]["error_total"] == pytest.approx(kept, rel=1e-8)
    alone = [k for k in errors["refit"] if k.endswith(" alone")]
    assert len(alone) == 2 and all(errors["refit"][k] != errors["held"][k] for k in alone)
