"""The memory budget of a whole run (``multimodal_ip.run_budget``): fitted or refused before the data are read; the
loader reads only the selected terms' data."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from multimodal_ip.errors import ConfigError
from multimodal_ip.io import load_dataset
from multimodal_ip.run_budget import estimate_run, fit_run

MMIP = [sys.executable, "-m", "multimodal_ip.cli"]


def _write(path, side=8, npx=32, step=12, extra_data=0):
    """A scan of ``side`` x ``side`` positions with XRF at the scan positions (plain h5py, README schema); the
    ptychography term holds ``extra_data`` more patterns' worth of a second, unread dataset when asked."""
    n = (side - 1) * step + npx
    pos = np.stack(np.meshgrid(np.arange(side) * step, np.arange(side) * step, indexing="ij"), -1).reshape(-1, 2)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "multimodal_ip"
        f.attrs["format_version"] = 1
        g = f.create_group("terms/ptychography")
        g.attrs["modality"] = "ptychography"
        g.create_dataset("data", data=rng.random((len(pos), npx, npx), dtype=np.float32) + 0.5)
        g.create_dataset("probe", data=np.exp(1j * rng.random((npx, npx))))
        g.create_dataset("positions", data=pos.astype(float))
        g = f.create_group("terms/fluorescence")
        g.attrs["modality"] = "fluorescence"
        g.attrs["elements"] = np.array(["Fe"], dtype=h5py.string_dtype())
        g.create_dataset("data", data=rng.random((1, len(pos))))
        g.create_dataset("kernel", data=np.ones((npx, npx)))
        g.create_dataset("positions", data=pos.astype(float))
    return n


def _plan_args(path, terms=None):
    """``(space, lazy terms, bytes)`` the loader hands its ``plan``."""
    seen = {}

    def plan(space, lazy, nbytes):
        seen.update(space=space, terms=dict(lazy), nbytes=nbytes)

    load_dataset(path, terms=terms, precision="float32", plan=plan)
    return seen["space"], seen["terms"], seen["nbytes"]


def test_plan_sees_what_will_be_read_before_reading(tmp_path, monkeypatch):
    """The loader's ``plan`` gets the bytes of the selected terms' data before any array is read; a refusal there
    reads nothing."""
    import multimodal_ip.io.dataset as dataset

    _write(tmp_path / "d.h5")
    reads = []
    real = dataset._read_checked
    monkeypatch.setattr(dataset, "_read_checked", lambda *a, **k: reads.append(a[2]) or real(*a, **k))

    def refuse(space, terms, nbytes):
        assert set(terms) == {"ptychography", "fluorescence"}
        assert nbytes == 64 * 32 * 32 * 4 + 32 * 32 * 16 + 64 * 2 * 8 + 64 * 4 + 32 * 32 * 8 + 64 * 2 * 8
        msg = "refused"
        raise ConfigError(msg)

    with pytest.raises(ConfigError, match="refused"):
        load_dataset(tmp_path / "d.h5", precision="float32", plan=refuse)
    assert reads == []


def test_only_the_selected_terms_are_read(tmp_path, monkeypatch):
    """``terms=["fluorescence"]`` reads no ptychography dataset (its positions only while the unknowns are
    inferred, through the lazy term), and the plan counts only the fluorescence data."""
    import multimodal_ip.io.dataset as dataset

    _write(tmp_path / "d.h5")
    reads = []
    real = dataset._read_checked
    monkeypatch.setattr(dataset, "_read_checked", lambda *a, **k: reads.append(a[2]) or real(*a, **k))
    seen = {}
    ds = load_dataset(tmp_path / "d.h5", terms=["fluorescence"], precision="float32",
                      plan=lambda s, t, n: seen.update(terms=set(t), nbytes=n))
    assert list(ds.terms) == ["fluorescence"] and seen["terms"] == {"fluorescence"}
    assert not [r for r in reads if "ptychography" in r] and reads
    assert seen["nbytes"] == 64 * 4 + 32 * 32 * 8 + 64 * 2 * 8


def test_fit_keeps_fewer_pairs_then_refuses(tmp_path, monkeypatch):
    """The run's own setting when it fits; fewer L-BFGS pairs (and smaller blocks) when not; below the smallest
    setting, one line naming the parts and the budget that would do."""
    monkeypatch.setenv("MMIP_MAX_MEMORY", "1G")
    _write(tmp_path / "d.h5")
    space, terms, nbytes = _plan_args(tmp_path / "d.h5")
    kw = dict(dtype="float32", solver="lbfgs", program=0)
    full = estimate_run(space, terms, nbytes, pairs=10, budget=0, **kw)
    one = estimate_run(space, terms, nbytes, pairs=1, chunk_bytes=1 << 20, budget=0, **kw)
    assert full.parts["data"] == nbytes and one.total < full.total
    est = fit_run(space, terms, nbytes, iterations=50, budget=full.total, **kw)
    assert (est.pairs, est.chunk_bytes) == (10, None)
    assert fit_run(space, terms, nbytes, iterations=3, budget=full.total, **kw).pairs == 3  # never more than iterations
    small_blocks = estimate_run(space, terms, nbytes, pairs=10, chunk_bytes=4 << 20, budget=0, **kw)
    est = fit_run(space, terms, nbytes, iterations=50, budget=small_blocks.total, **kw)
    assert est.pairs == 10 and est.chunk_bytes in (4 << 20, 16 << 20) and est.fits  # smaller blocks first
    one_coarse = estimate_run(space, terms, nbytes, pairs=1, chunk_bytes=4 << 20, budget=0, **kw)
    est = fit_run(space, terms, nbytes, iterations=50, budget=(small_blocks.total + one_coarse.total) // 2, **kw)
    assert 1 <= est.pairs < 10 and est.chunk_bytes == 4 << 20 and est.fits  # then fewer pairs
    est = fit_run(space, terms, nbytes, iterations=50, budget=one.total, **kw)
    assert (est.pairs, est.chunk_bytes) == (1, 1 << 20)  # then the smallest blocks
    with pytest.raises(ConfigError) as err:
        fit_run(space, terms, nbytes, iterations=50, budget=one.total - 1, **kw)
    line = str(err.value)
    assert "\n" not in line and "memory budget of the run (MMIP_MAX_MEMORY=1G" in line
    assert f"set MMIP_MAX_MEMORY to at least {int(np.ceil(one.total / 2**20))}M" in line
    assert "term 'ptychography'" in line and "data" in line


def test_offers_cover_a_measured_evaluation(tmp_path):
    """Each term's offered temporaries cover what one objective + gradient of it allocates (tracemalloc)."""
    import tracemalloc

    from multimodal_ip.io import build_problem

    _write(tmp_path / "d.h5", side=12, npx=32, step=20)
    space, terms, nbytes = _plan_args(tmp_path / "d.h5")
    est = estimate_run(space, terms, nbytes, dtype="float32", budget=0)
    problem = build_problem(load_dataset(tmp_path / "d.h5", precision="float32"), dtype="float32")
    v0 = problem.space.full(1.0)
    for i, term in enumerate(problem.terms):
        u = problem._term_input(i, v0)
        term.linearize_input(u)  # warm (plans, caches)
        tracemalloc.start()
        term.linearize_input(u)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= est.parts[f"term {term.name!r}"], term.name


def _run(argv, env_extra=None, limit=None):
    env = {k: v for k, v in os.environ.items() if k != "MMIP_MAX_MEMORY"}
    env.update(env_extra or {})

    def cap():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(MMIP + [str(a) for a in argv], capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=cap if limit else None)


def _started_program(data, out) -> tuple:
    """``(address space, resident memory)`` of a started ``mmip reconstruct`` at its refusal: every module the
    command imports before it plans the run (the commands import lazily, so importing the CLI is not enough)."""
    code = ("import os, sys; os.environ['MMIP_MAX_MEMORY'] = '1M'; from multimodal_ip.cli import main; "
            "rc = main(['reconstruct', sys.argv[1], '-o', sys.argv[2], '--iterations', '3']); "
            "print(rc, open('/proc/self/statm').read())")
    got = subprocess.run([sys.executable, "-c", code, str(data), str(out)], capture_output=True, text=True)
    rc, *pages = got.stdout.split()
    assert rc == "2", got.stderr  # refused before reading the data
    return tuple(int(v) * os.sysconf("SC_PAGE_SIZE") for v in pages[:2])


@pytest.mark.slow
def test_cli_fits_or_refuses_under_an_address_space_limit(tmp_path):
    """Under ``MMIP_MAX_MEMORY=B`` and an address-space limit of ``B`` plus what the started program reserves
    without using (and 64 MB): a budget below the run's estimate is refused in one line, exit 2, before the data
    are read; the budget that refusal names is admitted and the run finishes (no MemoryError)."""
    _write(tmp_path / "d.h5", side=16, npx=64, step=24)  # 256 patterns of 64 x 64: 4 MB of data
    vm, rss = _started_program(tmp_path / "d.h5", tmp_path / "probe.h5")
    argv = ["reconstruct", tmp_path / "d.h5", "-o", tmp_path / "r.h5", "--iterations", "3"]
    budget = (rss >> 20) + 20
    refused = _run(argv, {"MMIP_MAX_MEMORY": f"{budget}M"}, limit=(budget << 20) + vm - rss + (64 << 20))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"memory budget of the run (MMIP_MAX_MEMORY={budget}M" in refused.stderr and "data 4" in refused.stderr
    need = int(refused.stderr.split("set MMIP_MAX_MEMORY to at least ")[1].rstrip("M\n"))
    admitted = _run(argv, {"MMIP_MAX_MEMORY": f"{need}M"}, limit=(need << 20) + vm - rss + (64 << 20))
    assert admitted.returncode == 0, admitted.stderr
    assert "MemoryError" not in admitted.stderr and "Traceback" not in admitted.stderr
    assert "L-BFGS pair" in admitted.stderr  # fitted: fewer pairs than the 3 iterations would keep


def test_jax_is_not_imported_by_pylops():
    """pylops imports JAX whenever it is installed (150 MB of every process); the package turns that off."""
    code = ("import sys; from multimodal_ip.plugins import get_registry; get_registry(); "
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "JAX_PYLOPS"})
    assert out.stdout.strip() == "False", out.stderr


def test_cli_fits_the_run_or_refuses_in_one_line(tmp_path, capsys, monkeypatch):
    """In process: a budget the run fits with fewer pairs (one warning line, the result records them); a budget
    below the smallest setting: exit 2, one line, no result, the data never read."""
    import multimodal_ip.io.dataset as dataset
    import multimodal_ip.run_budget as run_budget
    from multimodal_ip.cli import main

    # the program's share is its resident memory, which drifts by more than a pair in a long test session: pin it
    program = run_budget._resident_bytes()
    monkeypatch.setattr(run_budget, "_resident_bytes", lambda: program)
    _write(tmp_path / "d.h5", side=12, npx=32, step=20)
    argv = ["reconstruct", str(tmp_path / "d.h5"), "-o", str(tmp_path / "r.h5"), "--iterations", "6"]
    space, terms, nbytes = _plan_args(tmp_path / "d.h5")
    kw = dict(dtype="float32", solver="lbfgs", program=program, chunk_bytes=4 << 20, budget=0)
    two = estimate_run(space, terms, nbytes, pairs=2, **kw).total
    three = estimate_run(space, terms, nbytes, pairs=3, **kw).total
    # room for 2 pairs, not 3 (a pair here is under 1 MiB) nor the 4 held at the peak of 6 iterations (release_last)
    monkeypatch.setenv("MMIP_MAX_MEMORY", str(two + (three - two) // 2))
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "L-BFGS pair(s) instead of 6" in err, err
    with h5py.File(tmp_path / "r.h5") as f:
        config = json.loads(f["results"].attrs["config"])
    assert config["solver_options"]["memory"] == 2 and config["chunk_memory"] == str(4 << 20)
    reads = []
    monkeypatch.setattr(dataset, "_read_checked", lambda *a, **k: reads.append(a[2]))
    monkeypatch.setenv("MMIP_MAX_MEMORY", "100M")
    argv[3] = str(tmp_path / "r2.h5")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "set MMIP_MAX_MEMORY to at least" in err, err
    assert reads == [] and not (tmp_path / "r2.h5").exists()


@pytest.mark.parametrize("case", ["self", "matrix", "map", "none", "lines-2detectors", "map-lines"])
def test_tomography_blocks_of_angles_equal_the_whole(case):
    """The XRF tomography model run a block of angles at a time equals the whole model to 1e-10 (float64): value,
    Jacobian products and adjoint; a block holds under ``block_for_bytes`` of temporaries."""
    from mmip_tomography import Geometry, XRFTomographyModel

    rng = np.random.default_rng(3)
    geom = Geometry.make((11, 10), np.linspace(0, 2 * np.pi, 7, endpoint=False), step=0.7)
    kw = {"self": {}, "matrix": {"matrix": 0.02 * rng.random((11, 10))},
          "map": {"attenuation": "map", "attenuation_map": 0.1 * rng.random((11, 10))},
          "none": {"attenuation": "none"},
          "lines-2detectors": {"mu_line": rng.uniform(0.05, 0.25, (2, 2)), "detectors": (np.pi / 2, -2.0),
                               "line_matrix": 0.02 * rng.random((2, 11, 10))},
          "map-lines": {"attenuation": "map", "attenuation_map": 0.1 * rng.random((11, 10)),
                        "line_maps": 0.2 * rng.random((2, 11, 10))}}[case]
    whole = XRFTomographyModel(geom, [0.1, 0.05], **kw)
    w, dw = rng.random((2, 11, 10)), rng.standard_normal((2, 11, 10))
    r = rng.standard_normal(whole.dimsd)
    y, jac = whole._linearize(w)
    for block in (1, 3):
        blocked = XRFTomographyModel(geom, [0.1, 0.05], block=block, **kw)
        assert len(blocked._parts) == -(-7 // block)
        yb, jb = blocked._linearize(w)
        np.testing.assert_allclose(yb, y, rtol=0, atol=1e-10 * np.abs(y).max())
        np.testing.assert_allclose(jb.matvec(dw.ravel()), jac.matvec(dw.ravel()), rtol=0,
                                   atol=1e-10 * np.abs(jac.matvec(dw.ravel())).max())
        np.testing.assert_allclose(jb.rmatvec(r.ravel()), jac.rmatvec(r.ravel()), rtol=0,
                                   atol=1e-10 * np.abs(jac.rmatvec(r.ravel())).max())
    assert whole.block_for_bytes(3 * whole.angle_bytes()) == 3


def test_tomography_term_is_blocked_by_the_chunk_memory(tmp_path):
    """``--chunk-memory`` sizes the XRF tomography model's blocks of angles (the term is one part) and the
    objective and gradient equal the unblocked term's."""
    from mmip_tomography.simulate import simulate

    from multimodal_ip.io import build_problem

    ds = simulate("tomo-absorbing", n=14, n_angles=9, noise=0.03)
    whole = build_problem(ds, chunk_bytes=0, dtype="float64")
    blocked = build_problem(ds, chunk_bytes=1, dtype="float64")
    v = whole.space.full(1.0)
    names = [t.name for t in blocked.terms if hasattr(t.operator, "block_for_bytes")]
    assert names and all(blocked.parts[n] == 1 for n in names)
    assert all(blocked.terms[blocked.term_names.index(n)].operator.block == 1 for n in names)
    a, b = whole.value_and_gradient(v), blocked.value_and_gradient(v)
    assert abs(a[0] - b[0]) <= 1e-10 * abs(a[0])
    np.testing.assert_allclose(b[1], a[1], rtol=0, atol=1e-10 * np.abs(a[1]).max())


def test_an_offer_on_malformed_shapes_leaves_the_message_to_the_term(tmp_path, capsys):
    """The budget is fitted before the term's checks: a scalar where the XRF positions belong (found by the fuzzer:
    the fluorescence offer indexed its shape, an internal error) ends in the term's one-line refusal, exit 2."""
    from mmip_paper import simulate

    from multimodal_ip.cli import main
    from multimodal_ip.io import save_dataset

    path = tmp_path / "d.h5"
    save_dataset(path, simulate("phantom", n=20, probe_size=16, step=4))
    with h5py.File(path, "a") as f:
        del f["terms/fluorescence/positions"]
        f.create_dataset("terms/fluorescence/positions", data=np.float64(0.0))
    assert main(["reconstruct", str(path), "-o", str(tmp_path / "r.h5"), "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "/terms/fluorescence/positions: expected shape" in err, err
