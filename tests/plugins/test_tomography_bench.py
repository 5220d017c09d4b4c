"""benchmarks/bench_tomography.py --peer astra: refuses in one line without astra's environment; the transmission-only
simulation it uses; astra's geometry equals ours (only where astra is importable)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mmip_tomography.geometry import Geometry, ray_sampling
from mmip_tomography.simulate import element_maps, simulate

from multimodal_ip.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_peer_without_its_environment_says_so_in_one_line(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_tomography.py"), "--peer", "astra", "--venv",
           str(tmp_path / "none")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "--install" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "none").exists()


def test_transmission_only_simulation_equals_the_pairs_transmission():
    kw = {"n": 12, "n_angles": 6, "elements": ["Fe"], "mu": [0.05], "line_attenuation": "off"}
    both = simulate("tomo-absorbing", **kw)
    alone = simulate("tomo-absorbing", terms=("transmission",), **kw)
    assert list(alone.terms) == ["transmission"] and "reference_term" not in alone.attrs
    np.testing.assert_array_equal(alone.terms["transmission"].arrays["data"], both.terms["transmission"].arrays["data"])
    np.testing.assert_array_equal(alone.truth["w"], both.truth["w"])
    noisy = simulate("tomo-absorbing", noise=0.03, seed=1, **kw)
    assert not np.array_equal(noisy.terms["transmission"].arrays["data"], both.terms["transmission"].arrays["data"])
    for bad in ((), ("xrf", "sinogram"), "xrf"):
        with pytest.raises(ConfigError, match="terms"):
            simulate("tomo-absorbing", terms=bad, **kw)


@pytest.mark.skipif(importlib.util.find_spec("astra") is None, reason="astra-toolbox not installed here")
def test_astra_forward_projection_in_our_geometry_equals_ours():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _astra_peer

    n, angles = 32, np.linspace(0, 2 * np.pi, 24, endpoint=False)
    truth = element_maps(n, 1, 4.0)[0]
    ours = np.asarray(ray_sampling(Geometry.make((n, n), angles), summed=True).forward(truth)).reshape(24, n)
    vol, proj = _astra_peer.geometry(angles, (n, n), n)
    theirs = _astra_peer.forward(truth, vol, proj, "strip")
    assert np.linalg.norm(theirs - ours) < 0.02 * np.linalg.norm(ours)
    assert np.linalg.norm(theirs[:, ::-1] - ours) > 0.3 * np.linalg.norm(ours)  # the bins' order matters
