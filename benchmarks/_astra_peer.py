"""The astra-toolbox side of ``bench_tomography.py --peer astra``, run in astra's own environment (numpy + astra only).

    python _astra_peer.py IN.npz OUT.npz

``IN.npz``: ``angles`` (K,) radians in our convention, ``shape`` (n0, n1), ``bins``, ``truth`` (n0, n1) an attenuation
map, ``sinogram`` (K, S) its measured line integrals (-log T) in our bin order, ``iterations``. ``OUT.npz``: for every
projector, ``fp_<projector>`` astra's forward projection of ``truth`` (in our bin order, to check the geometry), and for
every algorithm ``<name>`` the reconstruction and ``time_<name>`` its wall time in seconds (set-up included).

Our geometry (docs/tomography.md) in astra's ``parallel`` geometry: astra's volume x runs along our columns and its y
against our rows, so our ray direction (sin t, cos t) (row, col) is astra's angle pi/2 - t and our detector axis runs
opposite to astra's: the bins are reversed. Pixel and bin size 1, both centred.
"""

import sys
import time

import astra
import numpy as np

PROJECTORS = ("line", "linear", "strip")


def geometry(angles, shape, bins):
    """astra's ``(volume, projection)`` geometries equal to ours (see the module docstring)."""
    vol = astra.create_vol_geom(int(shape[0]), int(shape[1]))
    return vol, astra.create_proj_geom("parallel", 1.0, int(bins), np.pi / 2 - np.asarray(angles, dtype=float))


def forward(truth, vol, proj, projector):
    """astra's forward projection of ``truth`` with ``projector``, bins in our order."""
    pid = astra.create_projector(projector, proj, vol)
    sid, sino = astra.create_sino(np.asarray(truth, dtype=np.float32), pid)
    astra.data2d.delete(sid)
    astra.projector.delete(pid)
    return sino[:, ::-1]


def reconstruct(sinogram, vol, proj, projector, algorithm, iterations):
    """``(image, seconds)``: one astra CPU reconstruction (``SIRT`` non-negative, ``CGLS``, ``FBP`` ram-lak)."""
    t0 = time.perf_counter()
    pid = astra.create_projector(projector, proj, vol)
    sid = astra.data2d.create("-sino", proj, np.ascontiguousarray(sinogram[:, ::-1], dtype=np.float32))
    rid = astra.data2d.create("-vol", vol, 0.0)
    cfg = astra.astra_dict(algorithm)
    cfg.update(ReconstructionDataId=rid, ProjectionDataId=sid, ProjectorId=pid)
    if algorithm == "SIRT":
        cfg["option"] = {"MinConstraint": 0.0}
    aid = astra.algorithm.create(cfg)
    astra.algorithm.run(aid, 1 if algorithm == "FBP" else int(iterations))
    image = astra.data2d.get(rid)
    seconds = time.perf_counter() - t0
    for delete, i in ((astra.algorithm.delete, aid), (astra.data2d.delete, rid), (astra.data2d.delete, sid),
                      (astra.projector.delete, pid)):
        delete(i)
    return image, seconds


def main(src, dst):
    """Read ``src``, write ``dst`` (module docstring)."""
    d = np.load(src)
    vol, proj = geometry(d["angles"], d["shape"], int(d["bins"]))
    out = {f"fp_{p}": forward(d["truth"], vol, proj, p) for p in PROJECTORS}
    iterations = [int(i) for i in np.atleast_1d(d["iterations"])]
    runs = [("FBP", "strip", 1)] + [(a, "strip", i) for a in ("SIRT", "CGLS") for i in iterations]
    for algorithm, projector, i in runs:
        name = algorithm if algorithm == "FBP" else f"{algorithm}_{i}"
        out[name], out[f"time_{name}"] = reconstruct(d["sinogram"], vol, proj, projector, algorithm, i)
    out["astra_version"] = np.array(astra.__version__)
    out["cuda"] = np.array(bool(astra.use_cuda()))
    np.savez(dst, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
