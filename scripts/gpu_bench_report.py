"""Summary of one scripts/gpu-bench.sh run: reads the JSON it left in OUT_DIR and writes
summary.json and summary.md there (also printed): per shape, t3d bench's tokens/s, ms per forward,
% of the HBM bound and GPU memory beside the transformers loop; the server at concurrency c over
the engine at batch c (S = 1); and the targets, met or not. Standard library only.

usage: gpu_bench_report.py OUT_DIR SMALL_SHAPE BIG_SHAPE
"""
import json
import os
import sys


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_text(path, default):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def bench_rows(out, shape):
    report = load(os.path.join(out, f"bench-{shape}.json"), {"rows": []})
    return {(r["batch"], r["steps_per_block"]): r for r in report["rows"]}


def hf_rows(out, shape):
    report = load(os.path.join(out, f"hf-{shape}.json"), {"rows": []})
    return {(r["batch"], r["steps_per_block"]): r for r in report["rows"]}


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def shape_table(out, shape):
    ours, theirs = bench_rows(out, shape), hf_rows(out, shape)
    lines = [f"### {shape}", "",
             "| batch | S | tokens/s | ms / forward | % of HBM bound | GPU memory (GiB) "
             "| ops / forward (kernels) | attention | KV MB copied / forward | graphs % "
             "| transformers tokens/s | t3d / transformers |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    rows = []
    for key in sorted(ours):
        r, hf = ours[key], theirs.get(key)
        hf_tps = hf["tokens_per_second"] if hf else None
        mem = r.get("gpu_memory_used_bytes")
        row = {"shape": shape, "batch": key[0], "steps_per_block": key[1],
               "tokens_per_second": r["tokens_per_second"], "ms_per_forward": r["ms_per_forward"],
               "hbm_bound_percent": r.get("hbm_bound_percent"),
               "gpu_memory_gib": mem / 2**30 if mem else None,
               "aten_ops_per_forward": r.get("aten_ops_per_forward"),
               "kernel_ops_per_forward": r.get("kernel_ops_per_forward"),
               "sdpa_backend": r.get("sdpa_backend"),
               "kv_mb_copied_per_forward": (r.get("kv_bytes_copied_per_forward") or 0) / 1e6,
               "transformers_tokens_per_second": hf_tps,
               "t3d_over_transformers": r["tokens_per_second"] / hf_tps if hf_tps else None}
        rows.append(row)
        lines.append(f"| {key[0]} | {key[1]} | {row['tokens_per_second']:.1f} "
                     f"| {row['ms_per_forward']:.2f} | {fmt(row['hbm_bound_percent'], '.1f')} "
                     f"| {fmt(row['gpu_memory_gib'], '.1f')} "
                     f"| {fmt(row['aten_ops_per_forward'], '.0f')} ({fmt(row['kernel_ops_per_forward'], '.0f')}) "
                     f"| {row['sdpa_backend'] or '-'} | {row['kv_mb_copied_per_forward']:.1f} "
                     f"| {fmt(r.get('cuda_graph_replays_percent'), '.0f')} "
                     f"| {fmt(hf_tps, '.1f')} "
                     f"| {fmt(row['t3d_over_transformers'], '.2f')} |")
    return rows, lines


def like_for_like_table(out, shape):
    """The eager engine with cuDNN attention against the default, same rows, one run."""
    before, after = bench_rows(out, f"eager-{shape}"), bench_rows(out, f"graphs-{shape}")
    if not before or not after:
        return [], []
    lines = [f"### like for like, {shape}: eager + cuDNN attention -> CUDA graphs + "
             "memory-efficient attention", "",
             "| batch | S | eager tokens/s | graphs tokens/s | ratio | ms / forward (eager -> graphs) "
             "| forwards equal | tokens equal | graphs % |",
             "|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    rows = []
    for key in sorted(before):
        if key not in after:
            continue
        b, a = before[key], after[key]
        row = {"shape": shape, "batch": key[0], "steps_per_block": key[1],
               "eager_tokens_per_second": b["tokens_per_second"],
               "graphs_tokens_per_second": a["tokens_per_second"],
               "ratio": a["tokens_per_second"] / b["tokens_per_second"],
               "eager_ms_per_forward": b["ms_per_forward"], "graphs_ms_per_forward": a["ms_per_forward"],
               "forwards_equal": b["forwards"] == a["forwards"],
               "tokens_equal": b.get("tokens_digest") == a.get("tokens_digest"),
               "graphs_percent": a.get("cuda_graph_replays_percent")}
        rows.append(row)
        lines.append(f"| {key[0]} | {key[1]} | {row['eager_tokens_per_second']:.1f} "
                     f"| {row['graphs_tokens_per_second']:.1f} | {row['ratio']:.2f} "
                     f"| {row['eager_ms_per_forward']:.2f} -> {row['graphs_ms_per_forward']:.2f} "
                     f"| {'yes' if row['forwards_equal'] else 'NO'} | {'yes' if row['tokens_equal'] else 'NO'} "
                     f"| {fmt(row['graphs_percent'], '.0f')} |")
    return rows, lines


def server_table(out, shape):
    levels = load(os.path.join(out, f"load-{shape}.json"), [])
    ours = bench_rows(out, shape)
    lines = [f"### server / engine, {shape} (S = 1, streaming completions)", "",
             "| concurrency | server tokens/s | engine tokens/s (bench, same batch) | server / engine "
             "| completed | lost | first block p50 / p99 (ms) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    rows = []
    for level in levels:
        conc = int(level["level"].split("=")[1]) if level["level"].startswith("c=") else None
        engine = ours.get((conc, 1), {}).get("tokens_per_second")
        ttfb = level["time_to_first_block_ms"]
        row = {"concurrency": conc, "server_tokens_per_second": level["tokens_per_second"],
               "engine_tokens_per_second": engine,
               "server_over_engine": level["tokens_per_second"] / engine if engine else None,
               "completed": level["completed"], "lost": level["lost"],
               "ttfb_p50_ms": ttfb.get("p50"), "ttfb_p99_ms": ttfb.get("p99")}
        rows.append(row)
        lines.append(f"| {conc} | {row['server_tokens_per_second']:.1f} | {fmt(engine, '.1f')} "
                     f"| {fmt(row['server_over_engine'], '.2f')} | {row['completed']} | {row['lost']} "
                     f"| {fmt(row['ttfb_p50_ms'], '.1f')} / {fmt(row['ttfb_p99_ms'], '.1f')} |")
    return rows, lines


def targets(out, small, big):
    s, b = bench_rows(out, small), bench_rows(out, big)
    checks = [(f"{small}, batch 1, S = 1: >= 50% of the HBM bound", s.get((1, 1), {}).get("hbm_bound_percent"), 50.0),
              (f"{big}, batch 128, S = 1: > 5000 tokens/s", b.get((128, 1), {}).get("tokens_per_second"), 5000.0),
              (f"{big}, batch 128, S = 2: >= 2500 tokens/s", b.get((128, 2), {}).get("tokens_per_second"), 2500.0)]
    return [{"target": name, "measured": value, "met": None if value is None else value >= goal}
            for name, value, goal in checks]


def main():
    out, small, big = sys.argv[1:4]
    setup = load(os.path.join(out, "setup.json"), {})
    gpu = read_text(os.path.join(out, "gpu.txt"), "none (dry run)")
    kv = read_text(os.path.join(out, f"kv-plan-{small}.txt"), "-")
    check = read_text(os.path.join(out, "check.txt"), "")
    parity = [line.strip() for line in check.splitlines() if "identical" in line or "DIFFER" in line]
    rows, lines = [], ["# GPU serving benchmark (scripts/gpu-bench.sh)", "",
                       f"GPU: {gpu.splitlines()[-1] if gpu else '-'}; device {setup.get('device')}, "
                       f"dtype {setup.get('dtype')}, bound at {setup.get('bandwidth_gbs')} GB/s; "
                       "b = 4, random weights, EOS ignored.", "",
                       f"Server KV plan ({small}): {kv}", ""]
    lines += [f"- {p}" for p in parity] + ([""] if parity else [])
    for shape in (small, big):
        shape_rows, shape_lines = shape_table(out, shape)
        rows += shape_rows
        lines += shape_lines + [""]
    like_rows = []
    for shape in (small, big):
        shape_rows, shape_lines = like_for_like_table(out, shape)
        like_rows += shape_rows
        lines += shape_lines + ([""] if shape_lines else [])
    server_rows, server_lines = server_table(out, small)
    lines += server_lines + ["", "### targets", ""]
    goals = targets(out, small, big)
    lines += [f"- {g['target']}: measured {fmt(g['measured'], '.1f')}, "
              f"{'met' if g['met'] else 'not met' if g['met'] is False else 'not measured'}" for g in goals]
    summary = {"setup": setup, "gpu": gpu, "kv_plan": kv, "cuda_cpu_parity": parity, "bench": rows,
               "like_for_like": like_rows, "server": server_rows, "targets": goals}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
