"""docs/real_samples.md, "Validation of the default": ``mmip tune --refit`` with no flags (the grid on the tied
model, then the model alternatives at its choice) on cases the study's model list was NOT chosen on: other seeds,
a matrix with sharp edges, a matrix of 0.5 mean(w), coefficients off by -30 % / +15 %, two elements, a matrix and a
coupling error together. Per case: ``mmip compare`` (the default joint and ptychography alone) and the default tune;
the issue's acceptance (tuned total <= ptychography alone's, tuned w <= 0.9 x its w; without a mismatch, the
tuned total below ptychography alone's: the joint gain kept).

    python examples/real_samples/validate.py -o val/ [--n 128] [--cases m0:2,sharp0.3:2,...] [--cost m0.5:2]

``--cost CASE``: also time today's grid (``--models tied``) and the full grid of the study's five models on that
case, against the default.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import write_case  # noqa: E402
from study import MODELS, _errors  # noqa: E402

#: name -> keyword arguments of write_case (none of them a case of study.py's grid choice)
CASES: dict[str, dict] = {"m0": {}, "m0.5": {"matrix": 0.5}, "sharp0.3": {"matrix": 0.3, "sharp": True},
         "sharp1.0": {"matrix": 1.0, "sharp": True}, "a-30%": {"coupling_error": -0.3},
         "a+15%": {"coupling_error": 0.15}, "m0.3,a+15%": {"matrix": 0.3, "coupling_error": 0.15},
         "2el": {"elements": 2}, "2el,sharp0.5": {"elements": 2, "matrix": 0.5, "sharp": True},
         "rough0.5": {"matrix": 0.5, "rough": True}}
DEFAULT = ("m0:2,m0:3,m0.5:2,m0.5:3,sharp0.3:2,sharp1.0:3,a-30%:2,a+15%:3,m0.3,a+15%:4,2el:2,2el,sharp0.5:3,"
           "rough0.5:4,m0:5,m0.5:5,sharp0.3:6,sharp1.0:5,a-30%:6,a+15%:5,m0.3,a+15%:6,2el:6,2el,sharp0.5:5,"
           "rough0.5:6")


def _split(text) -> list:
    """``NAME:SEED`` items (a name may hold commas: split at the colons)."""
    out, rest = [], text
    while rest:
        name, _, tail = rest.partition(":")
        seed, _, rest = tail.partition(",")
        out.append((name.strip(), int(seed)))
    return out


def _tune(data, out, *flags) -> tuple:
    """``mmip tune --refit`` with ``flags``: (chosen setting, why, seconds)."""
    from multimodal_ip.cli import main

    t0 = time.perf_counter()
    assert main(["tune", str(data), "-o", str(out), "--refit", *flags]) == 0
    seconds = time.perf_counter() - t0
    lines = (out / "table.md").read_text().splitlines()
    chosen = next(ln for ln in lines if ln.startswith("chosen: "))[8:].split(" iterations on all")[0]
    return chosen.rsplit(", ", 1)[0], next(ln for ln in lines if ln.startswith("why: "))[5:], seconds


def _write(path, name, seed, n):
    """Case ``name`` at size ``n`` (the study's probe and step at 128 px and above, 16 px and 4 px below)."""
    return write_case(path, n=n, npx=32 if n >= 128 else 16, step=8 if n >= 128 else 4, seed=seed, **CASES[name])


def run_case(name, seed, outdir, n=128) -> dict:
    """Write case ``name`` with ``seed``; the default joint, ptychography alone and the default tune's refit."""
    from multimodal_ip.cli import main

    tag = f"{name}_s{seed}".replace(",", "_").replace("%", "pc")
    data = _write(outdir / f"{tag}.h5", name, seed, n)
    assert main(["compare", str(data), "-o", str(outdir / f"{tag}_compare")]) == 0
    table = json.loads((outdir / f"{tag}_compare" / "errors.json").read_text())
    chosen, why, seconds = _tune(data, outdir / f"{tag}_tune")
    tuned = _errors(outdir / f"{tag}_tune" / "refit.h5", data)

    def row(method):
        return {k: table[method][f"error_{k}"] for k in ("total", "w", "x")}

    alone = row("ptychography alone")
    mismatch = any(k in CASES[name] for k in ("matrix", "coupling_error"))
    ok = tuned["total"] <= alone["total"] and tuned["w"] <= 0.9 * alone["w"]
    return {"case": name, "seed": seed, "default joint": row("joint"), "ptychography alone": alone,
            "tuned (default, refit)": tuned, "chosen": chosen, "why": why, "tune s": seconds,
            "acceptance": bool(ok), "mismatch": mismatch}


def cost(name, seed, outdir, n=128) -> dict:
    """Wall time of the default tune against ``--models tied`` (the grid alone) and the study's full grid."""
    tag = f"cost_{name}_s{seed}".replace(",", "_").replace("%", "pc")
    data = _write(outdir / f"{tag}.h5", name, seed, n)
    return {"case": f"{name}:{seed}", "default": _tune(data, outdir / f"{tag}_auto")[2],
            "--models tied": _tune(data, outdir / f"{tag}_tied", "--models", "tied")[2],
            "full grid": _tune(data, outdir / f"{tag}_full", "--models", MODELS)[2]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--cases", default=DEFAULT, help="NAME:SEED items, comma-separated")
    ap.add_argument("--n", type=int, default=128, help="object size (px)")
    ap.add_argument("--cost", help="NAME:SEED: also time --models tied and the full grid on this case")
    args = ap.parse_args()
    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    records = [run_case(name, seed, outdir, args.n) for name, seed in _split(args.cases)]
    timing = [cost(*_split(args.cost)[0], outdir, args.n)] if args.cost else []
    (outdir / "results.json").write_text(json.dumps({"cases": records, "cost": timing}, indent=1))

    def cell(e):
        return f"{e['total']:.4f} ({e['w']:.4f}, {e['x']:.4f})"

    print("| case | seed | default joint | ptychography alone | tuned (default), refit | chosen | acceptance |")
    print("|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['case']} | {r['seed']} | {cell(r['default joint'])} | {cell(r['ptychography alone'])} | "
              f"{cell(r['tuned (default, refit)'])} | {r['chosen']} | {'met' if r['acceptance'] else 'NOT met'} |")
    for t in timing:
        print(f"cost on {t['case']}: default {t['default']:.1f} s, --models tied {t['--models tied']:.1f} s, "
              f"full grid ({MODELS}) {t['full grid']:.1f} s")


if __name__ == "__main__":
    main()
