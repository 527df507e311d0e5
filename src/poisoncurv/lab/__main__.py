"""``python -m poisoncurv.lab``: run (or load from the cache) one lab configuration.

Example: ``python -m poisoncurv.lab --attack cross-deterministic --theta 0.01 --kappa 0 --profile cpu
--device cuda``. Sizes come from the profile (:mod:`poisoncurv.lab.config`); any field can be
overridden with ``--set field=value``. A bad configuration exits with status 2 before any work.
``python -m poisoncurv.lab sweep GRID ...`` runs a grid file instead (:mod:`poisoncurv.lab.sweep`).
"""

from __future__ import annotations

import argparse
import sys

from poisoncurv.lab.cache import StaleResultError, get, result_path
from poisoncurv.lab.config import parse_value, profile_config
from poisoncurv.lab.data import DataNotFoundError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep"]:  # python -m poisoncurv.lab sweep GRID ...: see poisoncurv.lab.sweep
        from poisoncurv.lab.sweep import main as sweep_main

        return sweep_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m poisoncurv.lab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist", help="mnist | cifar10 | cifar100")
    ap.add_argument("--model", default=None, help="linear | mlp | lenet | preresnet20 | preresnet110")
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
        cfg = profile_config(args.profile, **overrides)
        res = get(cfg, args.results_dir, force=args.force, progress=not args.quiet)
    except (ValueError, DataNotFoundError, StaleResultError) as err:
        print(f"poisoncurv.lab: {err}", file=sys.stderr)
        return 2
    print(f"{result_path(cfg, args.results_dir)}  (data: {res['data_source']})")
    print(" epoch clean_acc  asr    overlap  hess_top   visible")
    for row in res["epochs"]:
        print(f"{row['epoch']:6.2f} {row['clean_acc']:.4f}     {row['asr']:.4f} {row['overlap']:.4f}   "
              f"{row['hess_top'][0]:.3e}  {row['visible']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
