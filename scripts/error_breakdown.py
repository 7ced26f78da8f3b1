#!/usr/bin/env python3
"""Classifies the wrong completions of a `t3d eval --dump` JSONL by the first thing that breaks:
a malformed step, an operand that is not available (reused, invented), a wrong sum, or a
missing operand / wrong final answer. Prints one row per steps-per-block setting."""
import collections
import json
import re
import sys

STEP = re.compile(r"^(\d+)\+(\d+)=(\d+)$")


def first_error(question, completion):
    operands = [int(x) for x in question.split("+")]
    parts = completion.strip().split(";")
    last = parts.pop()
    acc = None
    for step in parts:
        m = STEP.match(step)
        if not m:
            return "malformed step"
        lhs, rhs, total = map(int, m.groups())
        if acc is None:
            if lhs not in operands:
                return "operand not available"
            operands.remove(lhs)
        elif lhs != acc:
            return "carried sum changed"
        if rhs not in operands:
            return "operand not available"
        operands.remove(rhs)
        if lhs + rhs != total:
            return "wrong sum"
        acc = total
    if operands:
        return "operand left out"
    if not last.startswith("#") or last[1:] != str(acc):
        return "wrong final line"
    return "valid trace, wrong answer"


def main(path):
    by_setting = collections.defaultdict(collections.Counter)
    totals = collections.Counter()
    for line in open(path):
        r = json.loads(line)
        s = r["steps_per_block"]
        totals[s] += 1
        if not r["answer_correct"]:
            by_setting[s][first_error(r["question"], r["completion"])] += 1
    kinds = sorted({k for c in by_setting.values() for k in c})
    print("| S | n | wrong | " + " | ".join(kinds) + " |")
    print("|---|---|---|" + "---|" * len(kinds))
    for s in sorted(totals):
        c = by_setting[s]
        cells = " | ".join(str(c[k]) for k in kinds)
        print(f"| {s} | {totals[s]} | {sum(c.values())} | {cells} |")


if __name__ == "__main__":
    main(sys.argv[1])
