"""``python -m poisoncurv.lab``: run (or load from the cache) one lab configuration.

Example: ``python -m poisoncurv.lab --attack cross-deterministic --theta 0.01 --kappa 0 --profile cpu
--device cuda``. Sizes come from the profile (:mod:`poisoncurv.lab.config`); any field can be
overridden with ``--set field=value``. A bad configuration exits with status 2 before any work.
``python -m poisoncurv.lab sweep GRID ...`` runs a grid file instead (:mod:`poisoncurv.lab.sweep`).
"""

from __future__ import annotations

import argparse
import sys

from poisoncurv.lab.cache import ResultWriteError, StaleResultError, result_path
from poisoncurv.lab.config import parse_value, profile_config
from poisoncurv.lab.data import DataNotFoundError
from poisoncurv.lab.runner import get

# (heading, row field, format) of the printed table: basic runs measure the spectra at clean inputs; deep runs
# (measure="deep") at clean and at triggered inputs (poisoncurv.lab.deep)
BASIC_COLUMNS = (("epoch", "epoch", "6.2f"), ("clean_acc", "clean_acc", ".4f"), ("asr", "asr", ".4f"),
                 ("overlap", "overlap", ".4f"), ("hess_top", "hess_top", ".3e"), ("visible", "visible", ""))
DEEP_COLUMNS = (("epoch", "epoch", "6.2f"), ("clean_acc", "clean_acc", ".4f"), ("asr", "asr", ".4f"),
                ("clean_to_tgt", "clean_to_target", ".4f"), ("trig_overlap", "trig_overlap", ".4f"),
                ("trig_top", "trig_top", ".3e"), ("clean_overlap", "clean_overlap", ".4f"))


def table(rows: list[dict]) -> str:
    """The evaluation rows of a result as a fixed-width table (the columns of a deep run when its rows have them)."""
    columns = DEEP_COLUMNS if rows and "trig_overlap" in rows[0] else BASIC_COLUMNS
    widths = [max(len(head), 10) for head, _, _ in columns]
    lines = [" ".join(head.rjust(w) for (head, _, _), w in zip(columns, widths))]
    for row in rows:
        cells = []
        for (_, field, fmt), w in zip(columns, widths):
            value = row[field][0] if isinstance(row[field], list) else row[field]
            cells.append(format(value, fmt).rjust(w) if fmt else str(value).rjust(w))
        lines.append(" ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep"]:  # python -m poisoncurv.lab sweep GRID ...: see poisoncurv.lab.sweep
        from poisoncurv.lab.sweep import main as sweep_main

        return sweep_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m poisoncurv.lab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist", help="mnist | cifar10 | cifar100")
    ap.add_argument("--model", default=None, help="linear | mlp | lenet | preresnet8 | preresnet20 | preresnet110 | "
                                                    "convnet16 | convnet32 | convnet40 | convnet48 | convnet64")
    ap.add_argument("--loss", default="ce", help="ce | squared")
    ap.add_argument("--attack", default="cross-deterministic",
                    help="cross-deterministic | cross-stochastic | warp | badnets | lowcurv")
    ap.add_argument("--theta", type=float, default=0.01, help="poison fraction in [0, 1) (0: clean reference)")
    ap.add_argument("--kappa", type=float, default=0.0, help="input-gradient penalty weight >= 0")
    ap.add_argument("--profile", default="cpu", help="smoke | cpu | gpu | full")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any configuration field")
    ap.add_argument("--results-dir", default=None, help="default: results/lab")
    ap.add_argument("--force", action="store_true", help="recompute even if a results file exists")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    overrides = {"dataset": args.dataset, "loss": args.loss, "attack": args.attack, "theta": args.theta,
                 "kappa": args.kappa, "device": args.device, "seed": args.seed}
    if args.model is not None:
        overrides["model"] = args.model
    try:
        for item in args.set:
            field, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
            overrides[field.strip()] = parse_value(field.strip(), value)
        cfg = profile_config(args.profile, **overrides)             # validated here, once for the whole run
        res = get(cfg, args.results_dir, force=args.force, progress=not args.quiet, validated=True)
    except (ValueError, FloatingPointError, DataNotFoundError, StaleResultError, ResultWriteError) as err:
        print(f"poisoncurv.lab: {err}", file=sys.stderr)
        return 2
    print(f"{result_path(cfg, args.results_dir)}  (data: {res['data_source']})")
    print(table(res["epochs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
