"""Mutation testing of the code that decides the book's verdicts: ``make mutants`` (or ``python tools/mutation.py``).

Each mutant below changes one thing a careless edit could change (a threshold, a boundary, a pairing, a sign) in
one module, and names the tests of that module. The runner copies ``src/`` into a temporary mirror of the repository
(everything else linked), applies one mutant there, runs its tests with the mirror first on the path, and reports
whether the tests failed (the mutant is *killed*). The working tree is never modified, so it is safe while sweeps run.
Exit status 1 if any mutant survives. ``--only N`` runs mutant N (1-based) alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = "src/poisoncurv"


@dataclass(frozen=True)
class Mutant:
    path: str          # under src/poisoncurv
    old: str           # text that occurs exactly once in the file
    new: str
    tests: tuple[str, ...]
    what: str


CRIT, STATS, DEEP = ("tests/core/test_criteria.py",), ("tests/core/test_stats.py",), ("tests/chapters/test_deep_runs.py",)
CNN8 = ("tests/chapters/test_detectors_cnn.py::test_frontier_rules_on_hand_made_points",
        "tests/chapters/test_detectors_cnn.py::test_frontier_calls_carry_the_test_set_interval",
        "tests/chapters/test_detectors_cnn.py::test_model_test_ranks_poisoned_above_clean")
LAB_DEEP = ("tests/lab/test_lab_deep.py",)
CACHE = ("tests/lab/test_lab_robust.py",)
EXACT = ("tests/curvature/test_exact.py",)
EIGEN = ("tests/curvature/test_eigen.py",)

MUTANTS = (
    Mutant("core/criteria.py", "ASR_SUCCESS = 0.5 ", "ASR_SUCCESS = 0.45 ", CRIT, "success threshold"),
    Mutant("core/criteria.py", "np.asarray(asr, dtype=float) - np.asarray(untriggered_rate, dtype=float)",
           "np.asarray(asr, dtype=float)", CRIT, "success not net of the untriggered rate"),
    Mutant("core/criteria.py", "(acc < COLLAPSE_CHANCE_FACTOR / n_classes)", "(acc <= COLLAPSE_CHANCE_FACTOR / n_classes)", CRIT,
           "collapse boundary (accuracy)"),
    Mutant("core/criteria.py", "(rate >= COLLAPSE_TARGET_RATE)", "(rate > COLLAPSE_TARGET_RATE)", CRIT,
           "collapse boundary (untriggered rate)"),
    Mutant("core/criteria.py", "return (net_asr(asr, untriggered_rate) >= ASR_SUCCESS) & ~collapsed",
           "return (net_asr(asr, untriggered_rate) >= ASR_SUCCESS) | ~collapsed", CRIT, "a collapsed model succeeds"),
    Mutant("core/criteria.py", "ok[:-1] & ok[1:]", "ok[:-1] | ok[1:]", CRIT, "two-in-a-row rule"),
    Mutant("core/criteria.py", "while i > 0 and ok[i - 1]", "while i > 1 and ok[i - 1]", CRIT, "settled rule"),
    Mutant("core/criteria.py", "later = sum(v is None or v > s for s, v in ok)", "later = sum(v is None or v >= s for s, v in ok)",
           CRIT, "a tie counted as a lag"),
    Mutant("core/criteria.py", "if self.p <= P_SIGNIFICANT and self.n_later > self.n_earlier:",
           "if self.p <= 0.3 and self.n_later > self.n_earlier:", CRIT, "significance of a lag"),
    Mutant("core/criteria.py", "return p, INCONCLUSIVE if p > P_SIGNIFICANT", "return p, INCONCLUSIVE if p > 0.3", CRIT,
           "significance of a sign verdict"),
    Mutant("core/criteria.py", "return NEVER if self.n_never == self.n_success else LAG", "return LAG", CRIT,
           "never visible folded into lag"),
    Mutant("core/criteria.py", "    if kinds == {LAG, NEVER}:\n        return LAG\n", "", CRIT, "lag and never visible disagree"),
    Mutant("core/criteria.py", "if test.p <= P_SIGNIFICANT:", "if test.p < P_SIGNIFICANT:", CRIT, "separation boundary"),
    Mutant("core/criteria.py", "if test.hi < AUROC_USEFUL:", "if test.auroc < AUROC_USEFUL:", CRIT,
           "absence read from the point estimate"),
    Mutant("core/criteria.py", "clean_acc >= clean_model_acc - drop_max", "clean_acc > clean_model_acc - drop_max", CRIT,
           "defence accuracy boundary"),
    Mutant("core/criteria.py", "return asr <= asr_max and", "return asr < asr_max and", CRIT, "defence ASR boundary"),
    Mutant("core/criteria.py", "if len(counts) < MIN_SEEDS:", "if len(counts) < 1:", CRIT, "a defence verdict from one seed"),
    Mutant("core/stats.py", "binomtest(n_plus, n, 0.5).pvalue", "binomtest(n_plus, n, 0.5, alternative='greater').pvalue", STATS,
           "one-sided sign test"),
    Mutant("core/stats.py", "sum(ways[m][observed:])", "sum(ways[m][observed + 1:])", STATS, "permutation p strict"),
    Mutant("core/stats.py", "np.rint(2 * rankdata(", "np.rint(1 * rankdata(", STATS, "ties in the permutation count"),
    Mutant("core/stats.py", "np.sign(pos[:, None] - neg[None, :])", "np.sign(neg[None, :] - pos[:, None]).T", STATS,
           "bootstrap AUROC reversed"),
    Mutant("core/stats.py", "centre = (rate + z * z / (2 * n))", "centre = (rate + z * z / n)", STATS, "Wilson centre"),
    Mutant("core/stats.py", "d - math.hypot(p1 - l1, u2 - p2)", "d - math.hypot(p1 - l1, p2 - l2)", STATS, "Newcombe lower end"),
    Mutant("chapters/deep_runs.py", 'return self.of(replace(LabConfig(**res["config"]), theta=0.0))',
           'return self.of(replace(LabConfig(**res["config"]), theta=0.0, seed=0))', DEEP, "every seed paired with seed 0"),
    Mutant("chapters/deep_runs.py", "return np.nan_to_num(curvature_ratio(res, clean, probe), nan=0.0) >= thr",
           "return np.nan_to_num(curvature_ratio(res, clean, probe), nan=0.0) > thr", DEEP, "ratio boundary"),
    Mutant("chapters/deep_runs.py", 'if cell[1] == 0 or success_mask(res)[-1]:', "if True:", DEEP,
           "failed implants in the feature rows"),
    Mutant("chapters/deep_runs.py", "if aug == criteria.NO_COUNT and criteria.COUNTS in k_aug:", "if criteria.COUNTS in k_aug:", DEEP,
           "E3 without 'augmentation alone fails'"),
    Mutant("chapters/deep_runs.py", 'acc0 = res["config"], res["epochs"][-1], ref["epochs"][-1]["clean_acc"]',
           'acc0 = res["config"], res["epochs"][-1], runs.clean_model(kres[0])["epochs"][-1]["clean_acc"]', DEEP,
           "defences judged against seed 0's clean model"),
    Mutant("chapters/deep_runs.py", "n_works += bool(success_mask(res)[-1])", "n_works += 1", DEEP,
           "a failed undefended attack counted as working"),
    Mutant("chapters/frontier.py", "criteria.frontier_call(self.cost(undefended)[1:], self.asr_interval())",
           "criteria.frontier_call(self.cost(undefended)[:1] * 2, self.asr_interval())", CNN8, "free read from the point estimate"),
    Mutant("chapters/detectors_cnn.py", "c = np.array([p.cost(u) for p, u in zip(self.points, self.undefended)])",
           "c = np.array([p.cost(self.undefended[0]) for p in self.points])", CNN8, "every seed judged against seed 0's model"),
    Mutant("core/criteria.py", "return calls[0] if len(set(calls)) == 1 else SEEDS_DISAGREE", "return calls[0]", CRIT,
           "one seed decides a frontier cell"),
    Mutant("chapters/detectors_cnn.py", "[r.scores[name] for r in clean], [r.scores[name] for r in poisoned]",
           "[r.scores[name] for r in poisoned], [r.scores[name] for r in clean]", CNN8, "model-level test reversed"),
    Mutant("lab/deep.py", "proj = (vecs.T @ u.to(vecs.device)) ** 2", "proj = (vecs.T @ u.to(vecs.device)).abs()", LAB_DEEP,
           "overlap not squared"),
    Mutant("lab/deep.py", '"overlap": float(proj[0])', '"overlap": float(proj[-1])', LAB_DEEP, "overlap of the last eigenvector"),
    Mutant("lab/cache.py", 'if res.get("key") != cfg.key():', "if False:", CACHE, "a cached file of another run is used"),
    Mutant("lab/cache.py", 'if data_source is not None and res.get("data_source") != data_source:', "if False:", CACHE,
           "a cached file from other data is used"),
    Mutant("lab/cache.py", '    check_rows(res["epochs"], cfg.measure, path)\n', "", CACHE, "evaluation rows not checked"),
    Mutant("curvature/exact.py", "W = conv.weight.detach().flip(2, 3).transpose(0, 1)", "W = conv.weight.detach().transpose(0, 1)",
           EXACT, "first convolution's kernel not flipped"),
    Mutant("curvature/eigen.py", "subset_by_index=[d - k, d - 1]", "subset_by_index=[0, k - 1]", EIGEN + LAB_DEEP,
           "the dense route's bottom eigenpairs taken for the top"),
    Mutant("curvature/eigen.py", "torch.from_numpy(vals[::-1].copy())", "torch.from_numpy(vals.copy())", EIGEN + LAB_DEEP,
           "the dense route's eigenvalues ascending, out of step with their vectors"),
)


def _mirror(tmp: Path) -> Path:
    """A view of the repository in ``tmp``: ``src/`` copied, everything else linked."""
    root = tmp / "repo"
    root.mkdir()
    for item in REPO.iterdir():
        if item.name in ("src", ".git", ".venv") or item.name.startswith(".rerun-"):
            continue
        (root / item.name).symlink_to(item)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return root


def run(m: Mutant, root: Path, env: dict[str, str]) -> tuple[bool, float]:
    """Apply ``m`` in the mirror, run its tests, restore; ``(killed, seconds)``."""
    target = root / PKG / m.path
    text = target.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"mutant {m.what!r}: its text occurs {text.count(m.old)} times in {m.path}, not once")
    target.write_text(text.replace(m.old, m.new))
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests], cwd=root,
                             env=env, capture_output=True, text=True, timeout=600)
    finally:
        target.write_text(text)
    return out.returncode != 0, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", type=int, default=None, help="run mutant N (1-based) alone")
    args = ap.parse_args(argv)
    chosen = list(enumerate(MUTANTS, 1))
    if args.only is not None:
        if not 1 <= args.only <= len(MUTANTS):
            raise SystemExit(f"--only: choose 1 to {len(MUTANTS)}")
        chosen = [chosen[args.only - 1]]
    from poisoncurv.lab.data import shared_root
    with tempfile.TemporaryDirectory(prefix="poisoncurv-mutants-") as tmp:
        root = _mirror(Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(root / "src"), "POISONCURV_SHARED_DATA": str(shared_root())}
        survived = []
        for i, m in chosen:
            killed, secs = run(m, root, env)
            print(f"{i:3d}  {'killed  ' if killed else 'SURVIVED'}  {secs:5.1f} s  {m.path}: {m.what}", flush=True)
            if not killed:
                survived.append(i)
    print(f"{len(chosen) - len(survived)} of {len(chosen)} mutants killed" + (f"; survivors: {survived}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
