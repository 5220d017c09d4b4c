"""docs/real_samples.md: joint reconstruction when the phase is not only the element maps' (a matrix the XRF does not
see, coefficients off by 20 %), with the default, the tuned and the oracle choices, against ptychography alone.

Every case is written with plain numpy and h5py (cases.py), then run through the ``mmip`` command line:

* default: ``mmip compare`` (the tied model, c = 0.01), joint and ptychography alone;
* tuned: ``mmip tune --refit --models tied,matrix,coupling,matrix+coupling,matrix+coupling@matrix_smoothing_px=2``
  (c, model and the matrix's smoothing, 4 or 2 px, chosen by held-out validation), the refit;
* oracle: the setting of the tune's grid with the lowest true error (its held-out fit).

    python examples/real_samples/study.py -o study/ [--n 128] [--iterations 100] [--cases m0,m0.3,...] [--seed 0]
"""

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import write_case  # noqa: E402

#: name -> (matrix fraction of mean(w), rough, coupling error)
CASES = {"m0": (0.0, False, 0.0), "m0.3": (0.3, False, 0.0), "m1.0": (1.0, False, 0.0), "rough0.3": (0.3, True, 0.0),
         "a+20%": (0.0, False, 0.2), "a-20%": (0.0, False, -0.2)}


#: the models the tune tries: matrix+coupling at the default smoothing (4 px) and at 2 px (docs/real_samples.md)
MODELS = "tied,matrix,coupling,matrix+coupling,matrix+coupling@matrix_smoothing_px=2"


def _errors(result, data) -> dict:
    """Relative errors (total over x and w, and each) of a result file's x and w against the data's truth."""
    with h5py.File(result) as f, h5py.File(data) as d:
        out, num, den = {}, 0.0, 0.0
        for k in ("w", "x"):
            v, t = f["results/variables"][k][()], d["truth"][k][()]
            out[k] = float(np.linalg.norm(v - t) / np.linalg.norm(t))
            num, den = num + float(np.sum((v - t) ** 2)), den + float(np.sum(t**2))
        out["total"] = float(np.sqrt(num / den))
    return out


def run_case(name, outdir, n, iterations, c_values, models, seed=0) -> dict:
    """Write case ``name`` and run default, tuned and oracle; their errors."""
    from multimodal_ip.cli import main

    matrix, rough, error = CASES[name]
    data = write_case(outdir / f"{name}.h5", n=n, matrix=matrix, rough=rough, coupling_error=error, seed=seed)
    flags = ["--iterations", str(iterations)]
    assert main(["compare", str(data), "-o", str(outdir / f"{name}_compare"), *flags]) == 0
    table = json.loads((outdir / f"{name}_compare" / "errors.json").read_text())
    tune_dir = outdir / f"{name}_tune"
    assert main(["tune", str(data), "-o", str(tune_dir), *flags, "--c", c_values, "--models", models,
                 "--refit"]) == 0
    lines = (tune_dir / "table.md").read_text().splitlines()
    rows = [ln.split("|") for ln in lines if ln.startswith("| ") and "setting" not in ln]
    chosen = next(r[1].strip().strip("*") for r in rows if r[1].strip().startswith("**"))
    oracle = min(rows, key=lambda r: float(r[-2]))
    why = next(ln for ln in lines if ln.startswith("why: "))[5:]

    def alone(method):
        row = table[method]
        return {"total": row["error_total"], "w": row["error_w"], "x": row["error_x"]}

    return {"case": name, "default joint": alone("joint"), "ptychography alone": alone("ptychography alone"),
            "tuned joint (refit)": _errors(tune_dir / "refit.h5", data), "tuned setting": chosen, "why": why,
            "oracle setting": oracle[1].strip().strip("*"), "oracle total (held-out fit)": float(oracle[-2])}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--c", default="0.01,0.1,1", help="balance constants the tune tries")
    ap.add_argument("--seed", type=int, default=0, help="seed of the objects and the noise")
    ap.add_argument("--models", default=MODELS, help="models the tune tries")
    args = ap.parse_args()
    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    records = [run_case(name.strip(), outdir, args.n, args.iterations, args.c, args.models, args.seed)
               for name in args.cases.split(",")]
    (outdir / "results.json").write_text(json.dumps(records, indent=1))
    print("| case | default joint total (w, x) | ptychography alone total (w, x) | tuned joint, refit total (w, x) | "
          "tuned setting | oracle setting (held-out fit total) |")
    print("|---|---|---|---|---|---|")
    for r in records:
        def cell(e):
            return f"{e['total']:.4f} ({e['w']:.4f}, {e['x']:.4f})"

        print(f"| {r['case']} | {cell(r['default joint'])} | {cell(r['ptychography alone'])} | "
              f"{cell(r['tuned joint (refit)'])} | {r['tuned setting']} | {r['oracle setting']} "
              f"({r['oracle total (held-out fit)']:.4f}) |")


if __name__ == "__main__":
    main()
