"""Summarises scripts/side_by_side.sh: per setting, the median over rounds of t3d / transformers
(and t3d / baseline when a baseline ran), each ratio taken within one round; the two t3d sides
must have run equal forwards.

usage: side_by_side.py OUT_DIR
"""
import glob
import json
import os
import statistics
import sys


def rounds(out, name):
    """{(batch, S): [row per round]} for OUT/NAME-*.json, in round order."""
    by_setting = {}
    files = sorted(glob.glob(os.path.join(out, f"{name}-*.json")),
                   key=lambda f: int(f.rsplit("-", 1)[1].split(".")[0]))
    for path in files:
        for row in json.load(open(path))["rows"]:
            by_setting.setdefault((row["batch"], row["steps_per_block"]), []).append(row)
    return by_setting


def ratios(ours, theirs, same_forwards=True):
    """Per-round tokens/s ratios; two t3d binaries must have run the same forwards (the
    transformers loop spends one more per block, storing it, which is part of what is compared)."""
    if same_forwards and any(a["forwards"] != b["forwards"] for a, b in zip(ours, theirs)):
        sys.exit("the two sides ran different numbers of forwards: not like for like")
    return [a["tokens_per_second"] / b["tokens_per_second"] for a, b in zip(ours, theirs)]


def main(out):
    t3d, hf, base = rounds(out, "t3d"), rounds(out, "hf"), rounds(out, "baseline")
    head = f"{'batch':>5} {'S':>3} {'t3d tok/s':>10} {'hf tok/s':>10} {'t3d/hf':>7}"
    head += f" {'base tok/s':>10} {'t3d/base':>8}" if base else ""
    print(head + "   (medians over rounds; per-round ratios in brackets)")
    for key in sorted(t3d):
        median = lambda rows: statistics.median(r["tokens_per_second"] for r in rows)
        vs_hf = ratios(t3d[key], hf[key], same_forwards=False)
        line = (f"{key[0]:>5} {key[1]:>3} {median(t3d[key]):>10.1f} {median(hf[key]):>10.1f} "
                f"{statistics.median(vs_hf):>7.2f}")
        brackets = [" ".join(f"{r:.2f}" for r in vs_hf)]
        if base:
            vs_base = ratios(t3d[key], base[key])
            line += f" {median(base[key]):>10.1f} {statistics.median(vs_base):>8.2f}"
            brackets.append(" ".join(f"{r:.2f}" for r in vs_base))
        print(line + "   [" + "] [".join(brackets) + "]")
    b1 = {s: statistics.median(r["tokens_per_second"] for r in rows)
          for (b, s), rows in t3d.items() if b == 1}
    print(f"t3d S=1 over S=4 at batch 1: {b1[1] / b1[4]:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1])
