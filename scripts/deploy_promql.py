#!/usr/bin/env python3
"""Checks deploy/'s alert rules and Grafana dashboard against a live Prometheus scraping t3d.

Waits until the t3d target is up and every rule has been evaluated without error, then runs
every PromQL expression of the dashboard (panels and template variables, with the variables
set to match everything) and of the alert rules (each comparison made a `bool` one, so a rule
that is quiet still returns its series) through the HTTP API. An expression that fails to
parse or returns no series fails the check: a query naming a metric the server does not export
returns none. Prints one line per expression; exit 1 on any failure.
"""
import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request

import yaml

VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$instance": ".*", "$model": ".*"}
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)")


def api(base, path, **params):
    url = f"{base}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def wait_for(what, secs, ready):
    deadline = time.time() + secs
    while True:
        problem = ready()
        if problem is None:
            return
        if time.time() > deadline:
            sys.exit(f"FAIL {what}: {problem}")
        time.sleep(0.5)


def target_up(base, job):
    targets = api(base, "targets")["data"]["activeTargets"]
    mine = [t for t in targets if t["labels"].get("job") == job]
    if mine and all(t["health"] == "up" for t in mine):
        return None
    return [(t["scrapeUrl"], t["health"], t.get("lastError")) for t in mine] or "no target"


def rules_evaluated(base, expected):
    rules = [r for g in api(base, "rules")["data"]["groups"] for r in g["rules"]]
    bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    if len(rules) != expected:
        return f"{len(rules)} rules loaded, {expected} in the file"
    return bad or None


def with_bool_comparisons(expr):
    """`expr` with `bool` after each comparison outside label matchers and strings."""
    out, depth, quote, i = [], 0, None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'`":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif depth == 0:
            m = COMPARISON.match(expr, i)
            if m and not expr[i + len(m.group(1)) :].lstrip().startswith("bool"):
                out.append(m.group(1) + " bool")
                i += len(m.group(1))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def dashboard_queries(path):
    dash = json.load(open(path))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["query"]["query"])
            yield f"variable {var['name']}", m.group(1)
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield f"{panel['title']} [{target['refId']}]", target["expr"]


def alert_queries(path):
    for group in yaml.safe_load(open(path))["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", with_bool_comparisons(rule["expr"])


def substitute(expr):
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def check(base, label, expr):
    answer = api(base, "query", query=substitute(expr))
    if answer.get("status") != "success":
        return f"FAIL {label}: {answer.get('errorType')}: {answer.get('error')}"
    result = answer["data"]["result"]
    if not result:
        return f"FAIL {label}: no series for {expr!r}"
    values = ", ".join(r["value"][1] for r in result[:3])
    return f"ok   {label}: {len(result)} series ({values}{', …' if len(result) > 3 else ''})"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    p.add_argument("--dashboard", default="deploy/grafana/dashboards/t3d.json")
    p.add_argument("--rules", default="deploy/prometheus/alerts.yml")
    p.add_argument("--job", default="t3d")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    base = args.prometheus.rstrip("/")
    wait_for("target", args.timeout, lambda: target_up(base, args.job))
    print(f"ok   target: job {args.job} is up")
    n_rules = sum(len(g["rules"]) for g in yaml.safe_load(open(args.rules))["groups"])
    wait_for("rules", args.timeout, lambda: rules_evaluated(base, n_rules))
    print(f"ok   rules: {n_rules} loaded and evaluated with no errors")
    queries = list(dashboard_queries(args.dashboard)) + list(alert_queries(args.rules))
    lines = [check(base, label, expr) for label, expr in queries]
    print("\n".join(lines))
    failed = [line for line in lines if line.startswith("FAIL")]
    print(f"{len(lines) - len(failed)}/{len(lines)} expressions return data")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
