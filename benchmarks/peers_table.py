"""Print the Markdown tables of a ``bench_peers.py`` JSON (the numbers the READMEs quote).

Usage: ``python -m benchmarks.peers_table benchmarks/results/peers_cpu.json`` (or ``python benchmarks/peers_table.py ...``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(v, spec: str = ".3g") -> str:
    return "" if v is None else format(v, spec)


def tables(data: dict) -> str:
    lines = ["versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()),
             f"load average (1, 5, 15 min) at start {data['environment_start']['load_average_1_5_15']}, "
             f"at end {data['environment_end']['load_average_1_5_15']}; wall {data['wall_s']:.0f} s", ""]
    for r in data["runs"]:
        ms = r["methods"]
        grad = ms.get("gradient", {}).get("median_s")
        lines += [f"### {r['model']}, {r['n']} inputs, {r['threads']} thread(s), medians of {r['repeats']} "
                  f"interleaved repeats; load {r['environment_start']['load_average_1_5_15'][0]:.2f} at start, "
                  f"{r['environment_end']['load_average_1_5_15'][0]:.2f} at end", "",
                  "| method | median s | × gradient | products | max rel. eigenvalue error | max true rel. residual "
                  "| first call s | process peak MiB |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for m, e in ms.items():
            if "error" in e:
                lines.append(f"| {m} | error: {e['error']} | | | | | | |")
                continue
            med = e.get("median_s")
            resid = e.get("max_true_rel_residual", e.get("true_rel_residual"))
            lines.append(f"| {m} | {fmt(med)} | {fmt(med / grad if med and grad else None)} | {e.get('products', '')} "
                         f"| {fmt(e.get('max_rel_err_vs_float64_exact'), '.1e')} | {fmt(resid, '.1e')} "
                         f"| {fmt(e.get('first_call_s'))} | {fmt(e.get('process_peak_mib'), '.0f')} |")
        lines += ["", "ratios: " + "; ".join(f"{k} {v:.2f}" for k, v in r["ratios"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1]).read_text())))
