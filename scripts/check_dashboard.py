#!/usr/bin/env python3
"""Checks a deploy kit's Grafana dashboard (and its alert rules' metric names) without Grafana.

A kit is a directory (examples/<name>/deploy) holding grafana/dashboards/<NAME>.json,
grafana/provisioning/datasources/prometheus.yml, grafana/provisioning/dashboards/<NAME>.yml and
prometheus/alerts.yml.

  check_dashboard.py structure --kit DIR --dashboard NAME [--require WHAT=METRIC ...]
                               [--sources DIR ...] [--repo DIR]
      The dashboard JSON's structure: uid, title, schemaVersion, panels with unique ids, known
      types, grid positions inside the 24-column grid and not overlapping, every panel and target
      on the provisioned datasource's uid, unique refIds, non-empty queries; every query parses
      (promtool check rules on them as recording rules); every metric a query or an alert names
      is one the library registers (read from the headers under --repo) or one the service's
      own code under each --sources directory registers; each --require'd metric is shown by
      some panel; the provisioning files name the datasource and a dashboard provider.
  check_dashboard.py live --kit DIR --dashboard NAME --prometheus URL [--timeout SECONDS]
      Runs every panel's query against a live Prometheus and fails for each that returns no
      data, retrying until --timeout (a fresh Prometheus needs two scrapes for rates).

Exit 0 when every check passes; otherwise each failure on stderr and exit 1.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "state-timeline", "text"}
# Prometheus's own series that queries may use besides the library's.
BUILTIN = {"up"}
PROMQL_WORDS = {"sum", "by", "without", "rate", "increase", "max", "min", "avg", "count", "histogram_quantile",
                "or", "and", "unless", "on", "ignoring", "delta", "deriv", "le", "topk", "bottomk", "abs",
                "clamp_min", "clamp_max", "irate", "group_left", "group_right", "bool", "offset", "vector",
                "humanize", "humanizePercentage", "humanizeDuration", "printf", "time"}


class Kit:
    """The files of one deploy kit."""

    def __init__(self, directory, dashboard):
        self.dashboard = os.path.join(directory, "grafana", "dashboards", dashboard + ".json")
        self.datasources = os.path.join(directory, "grafana", "provisioning", "datasources", "prometheus.yml")
        self.providers = os.path.join(directory, "grafana", "provisioning", "dashboards", dashboard + ".yml")
        self.alerts = os.path.join(directory, "prometheus", "alerts.yml")


def panel_queries(dashboard):
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield panel, target


def substitute(expr, rate_interval="1m"):
    """Grafana's variables, as a dashboard on a 5 s scrape interval resolves them."""
    return expr.replace("$__rate_interval", rate_interval).replace("$__interval", "15s")


def registered_metrics(repo, sources=()):
    """Every series name the library can expose: the string literals "bulwark_..." of its
    headers, the HTTP server's prefixed families; the families the service's own code under
    `sources` registers (counter_family("name", ...) and the like); and each one's
    _bucket/_sum/_count."""
    names = set()
    for top in sources:
        for dirpath, _, files in os.walk(top):
            for f in files:
                if f.endswith((".hpp", ".cpp")):
                    with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                        names.update(re.findall(r'(?:counter|gauge|histogram)(?:_family)?\(\s*"([a-z_:]+)"', fh.read()))
    for top in ("include", "backends"):
        for dirpath, _, files in os.walk(os.path.join(repo, top)):
            for f in files:
                if f.endswith(".hpp"):
                    with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                        text = fh.read()
                    names.update(re.findall(r'"(bulwark_[a-z_]+)"', text))
                    # request_metrics builds its names from a prefix: prefix + "_requests_total".
                    for prefix in re.findall(r'"(bulwark_[a-z_]+)"', text):
                        for suffix in re.findall(r'std::string\(prefix\) \+ "(_[a-z_]+)"', text):
                            names.add(prefix + suffix)
    out = set(names)
    for n in names:
        for s in ("_bucket", "_sum", "_count"):
            out.add(n + s)
    return out


def metric_names(expr):
    """Series names in a PromQL expression: identifiers followed by a selector, a range, or
    standing alone, minus functions, keywords and label names."""
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    no_labels = re.sub(r"\{[^}]*\}", "{}", no_strings)
    no_grouping = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", no_labels)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", no_grouping):
        word = m.group(0)
        rest = no_grouping[m.end():].lstrip()
        if word in PROMQL_WORDS or rest.startswith("("):
            continue
        if re.fullmatch(r"\d+[smhdwy]?", word) or word in ("s", "m", "h"):
            continue
        names.add(word)
    return names


def check_structure(kit, repo, sources, required):
    errors = []
    with open(kit.dashboard, encoding="utf-8") as fh:
        dashboard = json.load(fh)
    for key, kind in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list)):
        if not isinstance(dashboard.get(key), kind) or not dashboard.get(key):
            errors.append(f"dashboard: '{key}' missing or not a non-empty {kind.__name__}")
    with open(kit.datasources, encoding="utf-8") as fh:
        ds_text = fh.read()
    ds_uids = re.findall(r"^\s*uid:\s*(\S+)\s*$", ds_text, re.M)
    if len(ds_uids) != 1 or not re.search(r"^\s*type:\s*prometheus\s*$", ds_text, re.M):
        errors.append(f"{kit.datasources}: expected one prometheus datasource with a uid, found uids {ds_uids}")
    ds_uid = ds_uids[0] if ds_uids else None
    with open(kit.providers, encoding="utf-8") as fh:
        prov = fh.read()
    if not re.search(r"^apiVersion:\s*1\s*$", prov, re.M) or not re.search(r"^\s*type:\s*file\s*$", prov, re.M) \
            or not re.search(r"^\s*path:\s*\S+", prov, re.M):
        errors.append(f"{kit.providers}: expected apiVersion 1 and a file provider with a path")

    ids, cells = set(), {}
    for panel in dashboard.get("panels", []):
        title = panel.get("title") or f"panel {panel.get('id')}"
        pid = panel.get("id")
        if not isinstance(pid, int) or pid in ids:
            errors.append(f"{title}: id {pid!r} missing or repeated")
        ids.add(pid)
        if not panel.get("title"):
            errors.append(f"panel {pid}: no title")
        if panel.get("type") not in PANEL_TYPES:
            errors.append(f"{title}: unknown panel type {panel.get('type')!r}")
        g = panel.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] < 0 or g["y"] < 0 or g["w"] < 1 \
                or g["h"] < 1 or g["x"] + g["w"] > 24:
            errors.append(f"{title}: gridPos {g} outside the 24-column grid")
        else:
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    if (x, y) in cells:
                        errors.append(f"{title}: overlaps '{cells[(x, y)]}' at ({x},{y})")
                        break
                    cells[(x, y)] = title
                else:
                    continue
                break
        if (panel.get("datasource") or {}).get("uid") != ds_uid:
            errors.append(f"{title}: datasource {panel.get('datasource')} is not the provisioned uid {ds_uid!r}")
        targets = panel.get("targets") or []
        if not targets and panel.get("type") != "text":
            errors.append(f"{title}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            errors.append(f"{title}: refIds {refs} missing or repeated")
        for t in targets:
            if not (t.get("expr") or "").strip():
                errors.append(f"{title} {t.get('refId')}: empty query")
            if (t.get("datasource") or {}).get("uid", ds_uid) != ds_uid:
                errors.append(f"{title} {t.get('refId')}: datasource is not {ds_uid!r}")

    known = registered_metrics(repo, sources) | BUILTIN
    used = set()
    for panel, t in panel_queries(dashboard):
        for name in metric_names(substitute(t.get("expr", ""))):
            used.add(name)
            if name not in known:
                errors.append(f"{panel.get('title')} {t.get('refId')}: metric {name} is not one the library registers")
    for what, metric in required.items():
        if metric not in used:
            errors.append(f"dashboard: nothing shows {what} ({metric})")
    with open(kit.alerts, encoding="utf-8") as fh:
        alerts = fh.read()
    for expr in re.findall(r"expr:\s*\|\n((?:\s{10,}.*\n)+)|expr:\s*(.+)", alerts):
        text = " ".join(e for e in expr if e)
        for name in metric_names(text):
            if name not in known:
                errors.append(f"alerts.yml: metric {name} is not one the library registers")

    # Every query parses: promtool checks them as recording rules.
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
        fh.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, (panel, t) in enumerate(panel_queries(dashboard)):
            fh.write(f"      - record: dashboard:q{i}\n        expr: {json.dumps(substitute(t.get('expr', '')))}\n")
        rules = fh.name
    try:
        run = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
        if run.returncode != 0:
            errors.append("a dashboard query does not parse:\n" + run.stdout + run.stderr)
    finally:
        os.unlink(rules)
    return errors, len(dashboard.get("panels", []))


def query(prometheus, expr):
    url = prometheus.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {body}")
    return body["data"]["result"]


def check_live(kit, prometheus, timeout):
    with open(kit.dashboard, encoding="utf-8") as fh:
        dashboard = json.load(fh)
    pending = list(panel_queries(dashboard))
    deadline = time.monotonic() + timeout
    errors = []
    while True:
        errors, still = [], []
        for panel, t in pending:
            expr = substitute(t["expr"])
            try:
                result = query(prometheus, expr)
            except Exception as e:  # noqa: BLE001 - reported as the panel's failure
                result, why = [], str(e)
            else:
                why = "no data"
            if not result:
                still.append((panel, t))
                errors.append(f"{panel['title']} {t['refId']}: {why}: {expr}")
        pending = still
        if not pending or time.monotonic() > deadline:
            return errors, len(list(panel_queries(dashboard)))
        time.sleep(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["structure", "live"])
    ap.add_argument("--kit", required=True, help="the deploy kit's directory")
    ap.add_argument("--dashboard", required=True, help="the dashboard's name (grafana/dashboards/NAME.json)")
    ap.add_argument("--require", action="append", default=[], metavar="WHAT=METRIC",
                    help="a panel must show METRIC (what it is for: WHAT)")
    ap.add_argument("--sources", action="append", default=[], help="the service's code, for its own metrics")
    ap.add_argument("--repo", default=os.path.abspath(os.path.join(HERE, "..")))
    ap.add_argument("--prometheus")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    kit = Kit(args.kit, args.dashboard)
    if args.mode == "structure":
        required = {}
        for r in args.require:
            what, sep, metric = r.rpartition("=")
            if not sep or not what or not metric:
                ap.error(f"--require wants WHAT=METRIC, not {r!r}")
            required[what] = metric
        errors, n = check_structure(kit, args.repo, args.sources, required)
        what = f"{n} panels"
    else:
        if not args.prometheus:
            ap.error("live needs --prometheus URL")
        errors, n = check_live(kit, args.prometheus, args.timeout)
        what = f"{n} panel queries against {args.prometheus}"
    for e in errors:
        print("FAIL:", e, file=sys.stderr)
    print(f"check_dashboard {args.mode} ({args.dashboard}): {what}, {len(errors)} failure(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
