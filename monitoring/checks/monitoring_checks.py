#!/usr/bin/env python3
"""Checks of the monitoring files that promtool and amtool cannot do alone.

Run by scripts/check-monitoring.sh; each subcommand exits non-zero with a
message naming what is wrong.

  lint-rules        every alert has a severity, summary, description and a
                    runbook_url whose anchor is a heading of docs/runbook.md,
                    and unit tests where it fires and where it stays quiet
  metric-names      every metric that a rule or dashboard query names is
                    documented in docs/monitoring.md (or is a recording rule),
                    and the controller table matches controller/src/metrics.rs
  exposed-documented
                    every metric family of a /metrics text is documented,
                    and every documented kadi_* metric is in it
  dashboard-rules   writes every dashboard query as a recording rule, so
                    that `promtool check rules` parses them
  live-queries      runs every dashboard query against a live Prometheus
  am-test-config    alertmanager.yml with every receiver turned into a
                    webhook to a local URL and short timings, for tests
  receive           a webhook receiver on 127.0.0.1 that appends every
                    notification as a JSON line to a file
  wait-notification waits until the receiver got a notification
  check-inhibition  posts alerts to a live Alertmanager and checks that an
                    instance down silences that instance's latency alert
"""

import argparse
import glob
import http.server
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(ROOT, "monitoring", "prometheus", "rules")
RULE_TESTS = os.path.join(ROOT, "monitoring", "prometheus", "tests")
DASHBOARDS = os.path.join(ROOT, "monitoring", "grafana", "dashboards")
MONITORING_DOC = os.path.join(ROOT, "docs", "monitoring.md")
RUNBOOK = os.path.join(ROOT, "docs", "runbook.md")
CONTROLLER_METRICS = os.path.join(ROOT, "controller", "src", "metrics.rs")
RUNBOOK_URL = "https://github.com/kadi-dev/kadi/blob/main/docs/runbook.md#"
SEVERITIES = {"critical", "warning"}

# PromQL words that look like metric names but are not.
KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2", "start", "end",
}


def fail(problems):
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rule_files():
    return sorted(glob.glob(os.path.join(RULES, "*.yml")))


def all_rules():
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                yield os.path.relpath(path, ROOT), group["name"], rule


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


# ------------------------------------------------------------------ rules


def lint_rules(_args):
    problems = []
    with open(RUNBOOK, encoding="utf-8") as f:
        headings = [line[3:].strip() for line in f if line.startswith("## ")]
    anchors = {github_anchor(h) for h in headings}

    firing, quiet = set(), set()
    for path in sorted(glob.glob(os.path.join(RULE_TESTS, "*.yml"))):
        for test in load_yaml(path).get("tests", []):
            for case in test.get("alert_rule_test", []) or []:
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])

    alerts = set()
    for path, group, rule in all_rules():
        if "alert" not in rule:
            if not re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]):
                problems.append(f"{path}: recording rule {rule['record']} is not level:metric:operation")
            continue
        name = rule["alert"]
        alerts.add(name)
        where = f"{path} ({group}) {name}"
        if not name.startswith("Kadi"):
            problems.append(f"{where}: alert names start with Kadi")
        severity = rule.get("labels", {}).get("severity")
        if severity not in SEVERITIES:
            problems.append(f"{where}: severity {severity!r} is not one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{where}: no {key} annotation")
        url = annotations.get("runbook_url", "")
        if url:
            if not url.startswith(RUNBOOK_URL):
                problems.append(f"{where}: runbook_url does not start with {RUNBOOK_URL}")
            anchor = url[len(RUNBOOK_URL):]
            if anchor != github_anchor(name):
                problems.append(f"{where}: runbook_url anchor #{anchor} is not #{github_anchor(name)}")
            if anchor not in anchors:
                problems.append(f"{where}: docs/runbook.md has no heading for #{anchor}")
        if name not in firing:
            problems.append(f"{where}: no unit test where it fires")
        if name not in quiet:
            problems.append(f"{where}: no unit test where it stays quiet")

    for heading in headings:
        if heading.startswith("Kadi") and heading not in alerts:
            problems.append(f"docs/runbook.md: section {heading} has no alert")
    print(f"{len(alerts)} alerts: severity, annotations, runbook sections and tests in order")
    fail(problems)


# ------------------------------------------------------------ metric names


def documented_metrics():
    """Metric name -> type, from the tables of docs/monitoring.md."""
    metrics = {}
    with open(MONITORING_DOC, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            match = re.fullmatch(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`", cells[0]) if cells else None
            if match and len(cells) >= 4:
                metrics[match.group(1)] = cells[1]
    return metrics


def metric_names(expr):
    """Metric names an expression selects (a lexical scan, not a parser)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"`[^`]*`", "``", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard_queries():
    """(dashboard file, panel title, expression) of every query, rows included."""
    found = []

    def walk(path, panels):
        for panel in panels:
            for target in panel.get("targets", []) or []:
                if target.get("expr"):
                    found.append((path, panel.get("title", ""), target["expr"]))
            walk(path, panel.get("panels", []) or [])

    for path in sorted(glob.glob(os.path.join(DASHBOARDS, "*.json"))):
        with open(path, encoding="utf-8") as f:
            board = json.load(f)
        name = os.path.relpath(path, ROOT)
        walk(name, board.get("panels", []))
        for variable in board.get("templating", {}).get("list", []):
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            match = re.match(r"\s*label_values\((.*),\s*\w+\)\s*$", query or "")
            if variable.get("type") == "query" and match:
                found.append((name, f"variable {variable['name']}", match.group(1)))
    return found


def concrete(expr):
    """A dashboard expression with Grafana's variables replaced."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def check_metric_names(_args):
    problems = []
    documented = documented_metrics()
    known = set(documented)
    for name, kind in documented.items():
        if kind == "histogram":
            known.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    records = {rule["record"] for _, _, rule in all_rules() if "record" in rule}
    known |= records

    exprs = [(path, rule.get("alert") or rule.get("record"), rule["expr"]) for path, _, rule in all_rules()]
    exprs += dashboard_queries()
    used = set()
    for where, what, expr in exprs:
        for name in metric_names(concrete(expr)):
            used.add(name)
            if name not in known:
                problems.append(f"{where}: {what}: {name} is neither documented in docs/monitoring.md nor a recording rule")

    # The controller's table against the names its source registers.
    with open(CONTROLLER_METRICS, encoding="utf-8") as f:
        source = set(re.findall(r'"(kadi_controller_[a-z0-9_]+)"', f.read()))
    table = {n for n in documented if n.startswith("kadi_controller_")}
    for name in sorted(source - table):
        problems.append(f"docs/monitoring.md: {name} (controller/src/metrics.rs) is not documented")
    for name in sorted(table - source):
        problems.append(f"docs/monitoring.md: {name} is documented but not in controller/src/metrics.rs")

    print(f"{len(exprs)} expressions name {len(used)} metrics; {len(documented)} documented, "
          f"{len(records)} recording rules; {len(problems)} problems")
    fail(problems)


def exposed_documented(args):
    with open(args.metrics, encoding="utf-8") as f:
        exposed = set(re.findall(r"^# TYPE (\S+) ", f.read(), re.MULTILINE))
    documented = {n for n in documented_metrics() if n.startswith(args.prefix) and ":" not in n
                  and not any(n.startswith(p) for p in args.exclude)}
    problems = [f"{n} is exposed but not documented in docs/monitoring.md" for n in sorted(exposed - documented)]
    problems += [f"{n} is documented but not exposed" for n in sorted(documented - exposed)]
    print(f"{len(exposed)} exposed metric families, {len(documented)} documented; {len(problems)} problems")
    fail(problems)


def dashboard_rules(args):
    rules = [{"record": f"dashboard:query_{i}:check", "expr": concrete(expr)}
             for i, (_, _, expr) in enumerate(dashboard_queries())]
    with open(args.output, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f)
    print(f"{len(rules)} dashboard queries written to {args.output}")


def live_queries(args):
    problems = []
    queries = dashboard_queries()
    answered = 0
    for where, title, expr in queries:
        url = f"{args.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": concrete(expr)})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            problems.append(f"{where}: {title}: {body.get('error')}")
        elif body["data"]["result"]:
            answered += 1
    print(f"{len(queries)} dashboard queries ran on live Prometheus, {answered} with data")
    fail(problems)


# ------------------------------------------------------------ alertmanager


def am_test_config(args):
    config = load_yaml(args.config)

    def shorten(route):
        for key, value in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1h")):
            if key in route or route is config["route"]:
                route[key] = value
        for child in route.get("routes", []) or []:
            shorten(child)

    shorten(config["route"])
    for receiver in config["receivers"]:
        name = receiver["name"]
        receiver.clear()
        receiver["name"] = name
        receiver["webhook_configs"] = [{"url": f"{args.url}/{name}", "send_resolved": True}]
    yaml.safe_dump(config, sys.stdout, sort_keys=False)


class Receiver(http.server.BaseHTTPRequestHandler):
    output = None

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(length) or b"{}")
        record = {"receiver": self.path.strip("/"), "time": time.time(), "payload": payload}
        with open(self.output, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.server.echo:
            for alert in payload.get("alerts", []):
                print(f"[{record['receiver']}] {alert.get('status')}: {alert['labels'].get('alertname')} "
                      f"{alert['labels'].get('severity', '')} - {alert.get('annotations', {}).get('summary', '')}",
                      flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_):
        pass


def receive(args):
    Receiver.output = args.output
    server = http.server.HTTPServer(("127.0.0.1", args.port), Receiver)
    server.echo = args.echo
    server.serve_forever()


def wait_notification(args):
    deadline = time.time() + args.timeout
    started = time.time()
    while time.time() < deadline:
        if os.path.exists(args.file):
            with open(args.file, encoding="utf-8") as f:
                for line in f:
                    record = json.loads(line)
                    if args.receiver and record["receiver"] != args.receiver:
                        continue
                    for alert in record["payload"].get("alerts", []):
                        if (alert["labels"].get("alertname") == args.alertname
                                and alert.get("status") == args.status
                                and record["time"] >= args.after):
                            print(f"{args.status} {args.alertname} reached receiver {record['receiver']} "
                                  f"after {record['time'] - args.after:.1f} s")
                            return
        time.sleep(0.5)
    fail([f"no {args.status} notification of {args.alertname} within {args.timeout} s "
          f"(waited {time.time() - started:.0f} s)"])


def check_inhibition(args):
    """KadiInstanceDown of one instance suppresses KadiRedirectLatencyHigh of
    that instance only."""
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))

    def alert(name, instance):
        labels = {"alertname": name, "severity": "warning", "job": "kadi-inhibition-test", "instance": instance}
        return {"labels": labels, "endsAt": ends, "annotations": {"summary": "inhibition test"}}

    alerts = [alert("KadiInstanceDown", "down:9464"), alert("KadiRedirectLatencyHigh", "down:9464"),
              alert("KadiRedirectLatencyHigh", "up:9464")]
    request = urllib.request.Request(f"{args.alertmanager}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    query = urllib.parse.urlencode({"filter": 'job="kadi-inhibition-test"'})
    deadline = time.time() + args.timeout
    states = {}
    while time.time() < deadline:
        with urllib.request.urlopen(f"{args.alertmanager}/api/v2/alerts?{query}", timeout=10) as response:
            states = {(a["labels"]["alertname"], a["labels"]["instance"]): a["status"]
                      for a in json.load(response)}
        latency_down = states.get(("KadiRedirectLatencyHigh", "down:9464"), {})
        latency_up = states.get(("KadiRedirectLatencyHigh", "up:9464"), {})
        if latency_down.get("state") == "suppressed" and latency_down.get("inhibitedBy") \
                and latency_up.get("state") == "active":
            print("KadiInstanceDown suppresses KadiRedirectLatencyHigh of its own instance, not of others")
            return
        time.sleep(0.5)
    fail([f"inhibition not as expected within {args.timeout} s: {states}"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("lint-rules").set_defaults(run=lint_rules)
    sub.add_parser("metric-names").set_defaults(run=check_metric_names)
    p = sub.add_parser("exposed-documented")
    p.add_argument("metrics", help="a file with the text exposition")
    p.add_argument("--prefix", default="kadi_")
    p.add_argument("--exclude", action="append", default=["kadi_controller"])
    p.set_defaults(run=exposed_documented)
    p = sub.add_parser("dashboard-rules")
    p.add_argument("output")
    p.set_defaults(run=dashboard_rules)
    p = sub.add_parser("live-queries")
    p.add_argument("prometheus", help="base URL, such as http://127.0.0.1:9090")
    p.set_defaults(run=live_queries)
    p = sub.add_parser("am-test-config")
    p.add_argument("config")
    p.add_argument("url", help="base URL of the webhook receiver")
    p.set_defaults(run=am_test_config)
    p = sub.add_parser("receive")
    p.add_argument("port", type=int)
    p.add_argument("output")
    p.add_argument("--echo", action="store_true", help="print every alert as it arrives")
    p.set_defaults(run=receive)
    p = sub.add_parser("wait-notification")
    p.add_argument("file")
    p.add_argument("alertname")
    p.add_argument("status", choices=["firing", "resolved"])
    p.add_argument("--receiver")
    p.add_argument("--after", type=float, default=0.0, help="ignore notifications before this Unix time")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(run=wait_notification)
    p = sub.add_parser("check-inhibition")
    p.add_argument("alertmanager", help="base URL, such as http://127.0.0.1:9093")
    p.add_argument("--timeout", type=float, default=15.0)
    p.set_defaults(run=check_inhibition)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
