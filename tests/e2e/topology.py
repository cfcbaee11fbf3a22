#!/usr/bin/env python3
"""End-to-end tests of the channel-metadata system, against a running scripts/topology.sh: every
request goes through nginx, as a client's would; faults are made with the topology's own controls
(scripts/topology.sh stop mysql, kill cms N, stop kafka N, kill hazelcast N).

  topology.py SCENARIO [--topology DIR]     (DIR defaults to $TOPOLOGY_DIR)

Scenarios (each a ctest test, label e2e, in this order):
  routes             every route of the contract: statuses, error codes, texts, request-id
  mysql_outage       the store's MariaDB stopped 30 s under reads and writes: every read answered
                     (stale header past the soft TTL), writes 202 during the outage, afterwards
                     every acknowledged write in MySQL exactly once with the latest value per
                     country; the downtime log shows the outage
  replica_kill       a CMS replica SIGKILLed under load: no failed request
  kafka_broker       one Kafka broker down while MySQL refuses writes: every retry message
                     published reaches CRS, every pending write reaches MySQL
  hazelcast_members  half the Hazelcast members killed under reads: no failed read
  dashboard          every Grafana panel's query returns data from the topology's Prometheus
                     (after the others: CRS reports its consumer lag only once retry messages
                     have reached it, which the outage scenarios make)

Every loop is bounded in count and time; the script leaves the topology as it found it (what it
stops, it starts again, also when an assertion fails).
"""
import argparse
import base64
import http.client
import json
import os
import random
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def load_env(topology):
    env = {}
    with open(os.path.join(topology, "env"), encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line.startswith("export "):
                continue
            for item in shlex.split(line[len("export "):]):
                k, _, v = item.partition("=")
                env[k] = v
    return env


class Topology:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.env = load_env(self.dir)
        self.cms = self.env["TOPOLOGY_CMS_URL"].replace("http://", "")
        self.crs = self.env["TOPOLOGY_CRS_URL"].replace("http://", "")
        self.cms_auth = (self.env["TOPOLOGY_CMS_USER"], self.env["TOPOLOGY_CMS_PASSWORD"])
        self.crs_auth = (self.env["TOPOLOGY_CRS_USER"], self.env["TOPOLOGY_CRS_PASSWORD"])

    def control(self, *args):
        started = time.monotonic()
        run = subprocess.run([self.env["TOPOLOGY_CONTROL"], *args], env={**os.environ, "TOPOLOGY_DIR": self.dir},
                             capture_output=True, text=True, timeout=180)
        log(f"topology.sh {' '.join(args)}: exit {run.returncode} in {time.monotonic() - started:.1f} s")
        if run.returncode != 0:
            raise Failure(f"topology.sh {' '.join(args)} failed: {run.stdout}{run.stderr}")

    def sql(self, which, statement):
        port = self.env["TOPOLOGY_STORE_MYSQL_PORT" if which == "store" else "TOPOLOGY_OUTAGE_MYSQL_PORT"]
        db = self.env["TOPOLOGY_STORE_DATABASE" if which == "store" else "TOPOLOGY_OUTAGE_DATABASE"]
        run = subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{port}", f"-u{self.env['TOPOLOGY_MYSQL_USER']}",
                              f"-p{self.env['TOPOLOGY_MYSQL_PASSWORD']}", "-N", "-B", "-e", statement, db],
                             capture_output=True, timeout=30)
        if run.returncode != 0:
            raise Failure(f"mariadb {statement!r}: {run.stderr.decode(errors='replace')}")
        # Values are write_through's frames: a binary header, then the document's JSON.
        return [line.split("\t") for line in run.stdout.decode("utf-8", "replace").split("\n") if line]


def log(msg):
    print(f"[{datetime.now(timezone.utc).strftime('%H:%M:%S.%f')[:-3]}] {msg}", flush=True)


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())


def call(host, method, path, body=None, auth=None, headers=None, timeout=20):
    """One request on a fresh connection; transport errors propagate (a test counts them)."""
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
        h.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection(host, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def document(cc, product="exampleProduct", name="AT One"):
    return {"countryCode": cc, "metadata": [{"name": name, "language": "English", "type": "News"}], "product": product}


# ---------------------------------------------------------------------------------------------
# routes


def expect(resp, status, what, text=None, error=None, content=None):
    check(resp.status == status, f"{what}: status {resp.status}, expected {status}; body {resp.text()[:300]!r}")
    rid = resp.header("request-id")
    check(rid is not None and UUID_RE.match(rid), f"{what}: request-id header {rid!r} is not a UUID")
    if text is not None:
        check(resp.text() == text, f"{what}: body {resp.text()!r}, expected {text!r}")
    if error is not None:
        body = resp.json()
        check(body.get("errorCode") == error[0], f"{what}: errorCode {body.get('errorCode')!r}, expected {error[0]!r}")
        if error[1] is not None:
            check(body.get("message") == error[1], f"{what}: message {body.get('message')!r}, expected {error[1]!r}")
    if content is not None:
        check(content in (resp.header("content-type") or ""), f"{what}: content-type {resp.header('content-type')!r}")
    return resp


def scenario_routes(t):
    cms, crs, auth = t.cms, t.crs, t.cms_auth
    api = "/api/channel-metadata/"
    wait_healthy(t)
    checked = 0

    def ok(*a, **k):
        nonlocal checked
        checked += 1
        return expect(*a, **k)

    # request-id: a UUID comes back unchanged; anything else is replaced by a fresh UUID.
    mine = str(uuid.uuid4())
    r = ok(call(cms, "GET", "/private/status", headers={"request-id": mine}), 200, "status with request-id", text="OK")
    check(r.header("request-id") == mine, f"request-id {mine} not kept: {r.header('request-id')}")
    r = ok(call(cms, "GET", "/private/status", headers={"request-id": "not-a-uuid"}), 200, "status, bad request-id")
    check(r.header("request-id") != "not-a-uuid", "a request-id that is not a UUID was kept")
    a = call(cms, "GET", "/private/status").header("request-id")
    b = call(cms, "GET", "/private/status").header("request-id")
    check(a != b, "two requests without request-id got the same one")
    # Health, info, metrics of CMS.
    h = ok(call(cms, "GET", "/private/healthcheck"), 200, "CMS healthcheck").json()
    check(h.get("status") == "UP", f"CMS healthcheck status {h}")
    for comp in ("database", "cache", "bus", "writes"):
        check(h.get("components", {}).get(comp, {}).get("status") == "UP", f"CMS healthcheck {comp}: {h}")
    check(isinstance(h["components"]["writes"].get("details", {}).get("pending"), int), f"writes.pending: {h}")
    info = ok(call(cms, "GET", "/private/info"), 200, "CMS info").json()
    check(info.get("app", {}).get("name") == "Channel Metadata Store" and info["app"].get("version"), f"CMS info {info}")
    for path in ("/private/prometheus", "/metrics"):
        m = ok(call(cms, "GET", path), 200, f"CMS {path}")
        check("bulwark_http_requests_total" in m.text(), f"CMS {path} lacks bulwark_http_requests_total")
    adm = ok(call(cms, "GET", "/admin/"), 200, "admin page", content="text/html")
    check(b"<html" in adm.body.lower() or b"<!doctype html" in adm.body.lower(), "admin page is not HTML")

    # Auth on every /api route.
    for method, path, body in (("GET", api + "GB", None), ("POST", api + "GB", document("GB")),
                               ("POST", api + "force-update-all", None)):
        ok(call(cms, method, path, body=body), 401, f"{method} {path} without credentials",
           text="Invalid or missing credentials")
        ok(call(cms, method, path, body=body, auth=("cms", "wrong")), 401, f"{method} {path} wrong password",
           text="Invalid or missing credentials")

    # Write, read back; the path's code is upper-cased; an unknown country is 404.
    doc = document("GB", product="routes-" + uuid.uuid4().hex[:8])
    ok(call(cms, "POST", api + "GB", body=doc, auth=auth), 200, "POST GB", text="Data successfully posted")
    got = ok(call(cms, "GET", api + "GB", auth=auth), 200, "GET GB", content="application/json").json()
    check(got == doc, f"GET GB returned {got}, expected {doc}")
    got = ok(call(cms, "GET", api + "gb", auth=auth), 200, "GET gb").json()
    check(got == doc, "GET gb (lower case) is not GB's document")
    doc_de = document("DE", product="lower-case-path")
    ok(call(cms, "POST", api + "de", body=doc_de, auth=auth), 200, "POST de", text="Data successfully posted")
    check(ok(call(cms, "GET", api + "DE", auth=auth), 200, "GET DE").json() == doc_de, "POST de not stored as DE")
    ok(call(cms, "GET", api + "QZ", auth=auth), 404, "GET unknown country",
       error=("CMS-0003", "Failed to find item"))
    # And both writes reached MySQL, once each.
    rows = t.sql("store", "SELECT COUNT(*) FROM " + store_table(t) + " WHERE k IN ('GB','DE')")
    check(rows[0][0] == "2", f"MySQL has {rows[0][0]} rows for GB and DE, expected 2")

    # Validation and bad input: the contract's codes and texts; nothing written.
    bad = [
        ("blank product", api + "FR", {**document("FR"), "product": " "}, ("CMS-0001", None)),
        ("missing product", api + "FR", {k: v for k, v in document("FR").items() if k != "product"}, ("CMS-0001", None)),
        ("empty metadata", api + "FR", {**document("FR"), "metadata": []}, ("CMS-0001", None)),
        ("blank metadata name", api + "FR", document("FR", name=""), ("CMS-0001", None)),
        ("malformed JSON", api + "FR", '{"countryCode": "FR", ', ("CMS-0007", "Malformed JSON request")),
        ("unknown field", api + "FR", {**document("FR"), "extra": 1},
         ("CMS-0007", "JSON field mismatch or invalid data structure")),
        ("wrong type", api + "FR", {**document("FR"), "metadata": "News"},
         ("CMS-0007", "JSON field mismatch or invalid data structure")),
        ("body code differs from path", api + "FR", document("IT"), ("CMS-0004", None)),
        ("path code not two letters", api + "F1", document("F1"), ("CMS-0004", None)),
        ("path code too long", api + "FRA", document("FRA"), ("CMS-0004", None)),
        ("oversized body", api + "FR", {**document("FR"), "product": "x" * (200 * 1024)}, ("CMS-0004", None)),
    ]
    for what, path, body, error in bad:
        ok(call(cms, "POST", path, body=body, auth=auth), 400, what, error=error)
    ok(call(cms, "GET", api + "FR", auth=auth), 404, "FR after only bad writes", error=("CMS-0003", "Failed to find item"))
    check(t.sql("store", "SELECT COUNT(*) FROM " + store_table(t) + " WHERE k = 'FR'")[0][0] == "0",
          "a rejected write reached MySQL")

    ok(call(cms, "POST", api + "force-update-all", auth=auth), 200, "force-update-all",
       text="Successfully updated the database with all cached metadata.")

    # CRS, through its nginx listener.
    ok(call(crs, "GET", "/trigger-cache-retry"), 401, "trigger without credentials")
    r = call(crs, "GET", "/trigger-cache-retry", auth=("crs", "wrong"))
    ok(r, 401, "trigger with wrong credentials")
    check(r.json() == {"statusCode": "401", "message": "Invalid or missing credentials"}, f"trigger 401 body {r.text()}")
    r = ok(call(crs, "GET", "/trigger-cache-retry", auth=t.crs_auth), 200, "trigger-cache-retry")
    check(r.json() == {"statusCode": "CRS-1000", "message": "Triggering a DB-write retry for channel-metadata-store"},
          f"trigger body {r.text()}")
    ok(call(crs, "GET", "/get-downtime-logs"), 401, "downtime logs without credentials",
       text="Invalid or missing credentials")
    logs = ok(call(crs, "GET", "/get-downtime-logs", auth=t.crs_auth), 200, "get-downtime-logs").json()
    check(isinstance(logs, list), f"downtime logs are not a list: {logs}")
    ok(call(crs, "GET", "/private/status"), 200, "CRS status", text="OK")
    h = ok(call(crs, "GET", "/private/healthcheck"), 200, "CRS healthcheck").json()
    check(h.get("status") == "UP", f"CRS healthcheck {h}")
    info = ok(call(crs, "GET", "/private/info"), 200, "CRS info").json()
    check(info.get("app", {}).get("name") == "cache-retry", f"CRS info {info}")
    check("bulwark_" in ok(call(crs, "GET", "/private/prometheus"), 200, "CRS metrics").text(), "CRS metrics empty")
    log(f"routes: {checked} answers checked")


_table = None


def store_table(t):
    """The table CMS keeps documents in: the one table of its database."""
    global _table
    if _table is None:
        tables = [r[0] for r in t.sql("store", "SHOW TABLES")]
        check(len(tables) >= 1, "the store database has no table")
        with_k = [name for name in tables
                  if any(c[0] == "k" for c in t.sql("store", f"SHOW COLUMNS FROM `{name}`"))]
        check(len(with_k) == 1, f"expected one key-value table in the store database, found {with_k}")
        _table = f"`{with_k[0]}`"
    return _table


# ---------------------------------------------------------------------------------------------
# load


class Load:
    """Reader and writer threads through nginx, bounded by a stop flag and a deadline. Records
    every answer; failures are kept with their time and reason."""

    def __init__(self, t, countries, readers=2, writer=True, written=None):
        self.t, self.countries = t, countries
        self.written = written or countries  # the writer's countries (a subset of countries)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.reads = []        # (start, end, status, stale, marker)
        self.writes = []       # (start, end, cc, marker, status)
        self.failures = []
        self.latest = {}       # cc -> marker of the last acknowledged write
        self.seq = 0
        self.threads = [threading.Thread(target=self.reader, daemon=True) for _ in range(readers)]
        if writer:
            self.threads.append(threading.Thread(target=self.writer, daemon=True))

    def __enter__(self):
        self.deadline = time.monotonic() + 240
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(timeout=60)

    def running(self):
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def reader(self):
        rng = random.Random()
        while self.running():
            cc = rng.choice(self.countries)
            start = time.monotonic()
            try:
                r = call(self.t.cms, "GET", "/api/channel-metadata/" + cc, auth=self.t.cms_auth)
                marker = r.json().get("product") if r.status == 200 else None
                row = (start, time.monotonic(), r.status, r.header("x-stale") == "true", marker)
                with self.lock:
                    self.reads.append(row)
                    if r.status != 200:
                        self.failures.append(f"GET {cc}: {r.status} {r.text()[:200]}")
            except Exception as e:  # noqa: BLE001 - a transport failure is a failed request
                with self.lock:
                    self.failures.append(f"GET {cc}: {type(e).__name__}: {e}")
            time.sleep(0.01)

    def writer(self):
        while self.running():
            with self.lock:
                self.seq += 1
                n = self.seq
            cc = self.written[n % len(self.written)]
            marker = f"w{n}-{uuid.uuid4().hex[:6]}"
            start = time.monotonic()
            try:
                r = call(self.t.cms, "POST", "/api/channel-metadata/" + cc, body=document(cc, product=marker),
                         auth=self.t.cms_auth)
                with self.lock:
                    self.writes.append((start, time.monotonic(), cc, marker, r.status))
                    if r.status in (200, 202):
                        self.latest[cc] = marker
                    else:
                        self.failures.append(f"POST {cc}: {r.status} {r.text()[:200]}")
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    self.failures.append(f"POST {cc}: {type(e).__name__}: {e}")
            time.sleep(0.02)

    def summary(self):
        with self.lock:
            return (f"{len(self.reads)} reads ({sum(1 for r in self.reads if r[3])} stale), "
                    f"{len(self.writes)} writes ({sum(1 for w in self.writes if w[4] == 202)} pending), "
                    f"{len(self.failures)} failed")


def wait_healthy(t):
    """Every CMS replica sees database, cache and bus up (a previous scenario's fault is over:
    MySQL back and the breaker closed again), and CRS has no message left to replay."""
    last = {}  # replica -> what it answered last (the failure names the replica that held out)

    def healthy():
        for replica in t.env["TOPOLOGY_CMS_REPLICAS"].split(","):
            try:
                h = call(replica, "GET", "/private/healthcheck", timeout=5).json()
            except Exception as e:  # noqa: BLE001 - not healthy yet
                last[replica] = f"no answer: {e}"
                return False
            last[replica] = h
            if any(h.get("components", {}).get(c, {}).get("status") != "UP" for c in ("database", "cache", "bus")):
                return False
            if h["components"].get("writes", {}).get("details", {}).get("pending", 1) != 0:
                return False
        return True
    try:
        wait_for("every CMS replica healthy with no pending write", healthy, 90)
    except Failure as e:
        raise Failure(f"{e}; last healthchecks: {last}") from None


def seed(t, countries, prefix):
    wait_healthy(t)
    for cc in countries:
        r = call(t.cms, "POST", "/api/channel-metadata/" + cc, body=document(cc, product=f"{prefix}-{cc}"),
                 auth=t.cms_auth)
        check(r.status == 200, f"seeding {cc}: {r.status} {r.text()}")


def wait_for(what, predicate, seconds):
    deadline = time.monotonic() + seconds
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {seconds} s waiting for {what}")
        time.sleep(1)


def mysql_values(t, countries):
    """country -> (rows, the stored value as text). Values are write_through's frames (a binary
    header, then the document's JSON): fetched as hex, so no byte of them can break the rows."""
    rows = t.sql("store", "SELECT k, COUNT(*), HEX(MAX(v)) FROM " + store_table(t) + " WHERE k IN (" +
                 ",".join(f"'{c}'" for c in countries) + ") GROUP BY k")
    return {k: (int(n), bytes.fromhex(v).decode("utf-8", "replace")) for k, n, v in rows}


def all_in_mysql(t, latest):
    """Every country's row holds its latest acknowledged write's marker, once."""
    got = mysql_values(t, list(latest))
    missing = [cc for cc, marker in latest.items()
               if cc not in got or got[cc][0] != 1 or f'"product":"{marker}"' not in got[cc][1].replace(" ", "")]
    return not missing, missing, got


def fmt_utc(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------------------------------
# scenarios with faults


def scenario_mysql_outage(t):
    # The writer rewrites half of them all along (their reads answer the pending write); the other
    # half only gets read, so past the soft TTL their reads are last known good, stale.
    countries = ["AT", "BE", "CH", "DK", "ES", "FI", "GR", "IE"]
    written = countries[:4]
    seed(t, countries, "before")
    logs_before = call(t.crs, "GET", "/get-downtime-logs", auth=t.crs_auth).json()
    outage = 30
    mysql_stopped = False
    try:
        with Load(t, countries, written=written) as load:
            time.sleep(3)
            wall_stop = time.time()
            t.control("stop", "mysql")
            mysql_stopped = True
            down_from = time.monotonic()
            time.sleep(outage - 5)
            # The alert rules see the outage in the live metrics (pending: their `for` is longer
            # than this outage).
            alerts = prometheus_alerts(t)
            time.sleep(5)
            down_until = time.monotonic()
            t.control("start", "mysql")
            mysql_stopped = False
            wall_start = time.time()
            time.sleep(5)
        log("mysql_outage: " + load.summary())
    finally:
        if mysql_stopped:
            t.control("start", "mysql")
    check(not load.failures, f"{len(load.failures)} failed requests, first: {load.failures[:5]}")
    for alert in ("ChannelMetadataDatabaseDown", "ChannelMetadataServingStale"):
        check(alert in alerts, f"Prometheus did not see {alert} during the outage (active: {sorted(alerts)})")
    during = [r for r in load.reads if r[0] >= down_from and r[1] <= down_until]
    check(len(during) > 50, f"only {len(during)} reads during the outage")
    soft_ttl = parse_seconds(t.env["TOPOLOGY_SOFT_TTL"])
    late = [r for r in during if r[0] >= down_from + soft_ttl + 2]
    stale = [r for r in late if r[3]]
    check(stale, f"no read carried the stale header past the soft TTL ({len(late)} reads after it)")
    w_during = [w for w in load.writes if w[0] >= down_from and w[1] <= down_until]
    check(len(w_during) > 10, f"only {len(w_during)} writes during the outage")
    not_pending = [w for w in w_during if w[4] != 202]
    check(not not_pending, f"writes during the outage not answered 202: {not_pending[:5]}")
    # After recovery every acknowledged write is in MySQL, once, with the latest value per country.
    try:
        wait_for("every acknowledged write in MySQL", lambda: all_in_mysql(t, load.latest)[0], 120)
    except Failure:
        raise Failure(f"not in MySQL with their latest value: {all_in_mysql(t, load.latest)[1]}") from None
    total = t.sql("store", "SELECT COUNT(*) FROM " + store_table(t) + " WHERE k IN (" +
                  ",".join(f"'{c}'" for c in countries) + ")")[0][0]
    check(int(total) == len(countries), f"{total} rows for {len(countries)} countries")
    # Every replica's reads converge on the latest write (a replica's near cache learns of the
    # other's writes through the invalidation topic, asynchronously): asked directly, not via nginx.
    def lagging():
        out = []
        for replica in t.env["TOPOLOGY_CMS_REPLICAS"].split(","):
            for cc, marker in load.latest.items():
                r = call(replica, "GET", "/api/channel-metadata/" + cc, auth=t.cms_auth)
                got = r.json().get("product") if r.status == 200 else r.status
                if got != marker:
                    out.append(f"{replica} {cc}: {got}, latest acknowledged {marker}")
        return out
    converge_from = time.monotonic()
    first_lag = lagging()
    try:
        wait_for("every replica to read the latest writes", lambda: not lagging(), 30)
    except Failure:
        raise Failure(f"replicas still read older writes 30 s after recovery: {lagging()}") from None
    if first_lag:
        log(f"mysql_outage: right after recovery {len(first_lag)} replica reads were behind "
            f"(first: {first_lag[0]}); all converged in {time.monotonic() - converge_from:.1f} s")
    # The downtime log shows the outage: a new entry stamped within it.
    def new_entry():
        logs = call(t.crs, "GET", "/get-downtime-logs", auth=t.crs_auth).json()
        fresh = [e for e in logs if e not in logs_before
                 and fmt_utc(wall_stop - 2) <= e.get("downtimeTimestamp", "") <= fmt_utc(wall_start + 5)]
        return fresh
    entries = wait_for("a downtime-log entry for the outage", new_entry, 60)
    log(f"mysql_outage: {len(stale)} stale reads, {len(w_during)} writes pending during the outage, "
        f"all {len(load.latest)} countries' latest writes in MySQL; downtime log: {entries}; "
        f"alerts during the outage: {sorted(alerts)}")


def prometheus_alerts(t):
    """Names of the alerts pending or firing in the topology's Prometheus."""
    url = t.env["TOPOLOGY_PROMETHEUS_URL"].replace("http://", "")
    body = call(url, "GET", "/api/v1/alerts").json()
    return {a["labels"]["alertname"] for a in body["data"]["alerts"]}


def parse_seconds(v):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", v)
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, "m": n * 60, None: n / 1000}[m.group(2)]


def scenario_replica_kill(t):
    countries = ["NL", "NO", "PL", "PT", "SE"]
    seed(t, countries, "kill")
    killed = False
    try:
        with Load(t, countries, readers=3) as load:
            time.sleep(3)
            t.control("kill", "cms", "1")
            killed = True
            time.sleep(8)
        log("replica_kill: " + load.summary())
    finally:
        if killed:
            t.control("start", "cms", "1")
    check(len(load.reads) > 100 and len(load.writes) > 20, "too little load: " + load.summary())
    check(not load.failures, f"{len(load.failures)} failed requests through nginx: {load.failures[:5]}")
    check(all(w[4] == 200 for w in load.writes), "a write was not durable while MySQL was up")
    wait_for("every acknowledged write in MySQL", lambda: all_in_mysql(t, load.latest)[0], 30)


def replica_metric(t, service, name, labels=None):
    """Sum of a counter over every replica of a service (scraped directly, not via Prometheus)."""
    total = 0.0
    for replica in t.env[f"TOPOLOGY_{service.upper()}_REPLICAS"].split(","):
        text = call(replica, "GET", "/private/prometheus").text()
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+)(\{[^}]*\})?\s+(\S+)$", line)
            if m and m.group(1) == name and all(f'{k}="{v}"' in (m.group(2) or "") for k, v in (labels or {}).items()):
                total += float(m.group(3))
    return total


def scenario_kafka_broker(t):
    countries = [a + b for a in "KLM" for b in "ABCDEFG"]  # 21 codes no other scenario writes
    wait_healthy(t)
    # Earlier scenarios' retry messages handled first, so the counts below are this one's alone.
    def quiet():
        before = replica_metric(t, "crs", "bulwark_replayer_messages_total")
        time.sleep(2)
        return replica_metric(t, "crs", "bulwark_replayer_messages_total") == before and \
            replica_metric(t, "cms", "bulwark_write_through_pending_entries") == 0
    wait_for("CRS done with earlier retry messages", quiet, 60)
    published0 = replica_metric(t, "cms", "bulwark_write_through_retry_published_total")
    handled0 = replica_metric(t, "crs", "bulwark_replayer_messages_total")
    stopped = []
    acknowledged = {}
    try:
        t.control("stop", "kafka", "2")
        stopped.append("kafka")
        t.control("stop", "mysql")
        stopped.append("mysql")
        for cc in countries:
            marker = "kafka-" + uuid.uuid4().hex[:8]
            r = call(t.cms, "POST", "/api/channel-metadata/" + cc, body=document(cc, product=marker), auth=t.cms_auth)
            check(r.status == 202, f"POST {cc} with MySQL down and a broker down: {r.status} {r.text()}")
            acknowledged[cc] = marker
        published = replica_metric(t, "cms", "bulwark_write_through_retry_published_total") - published0
        check(published == len(countries), f"{published} retry messages published for {len(countries)} pending writes")
        t.control("start", "mysql")
        stopped.remove("mysql")
        t.control("start", "kafka", "2")
        stopped.remove("kafka")
    finally:
        if "mysql" in stopped:
            t.control("start", "mysql")
        if "kafka" in stopped:
            t.control("start", "kafka", "2")
    wait_for("every pending write in MySQL", lambda: all_in_mysql(t, acknowledged)[0], 120)
    # Every message published reached CRS (replayed, or found already written by a reconcile).
    handled = wait_for("CRS to handle every retry message",
                       lambda: (lambda h: h if h >= published else 0)(
                           replica_metric(t, "crs", "bulwark_replayer_messages_total") - handled0), 60)
    log(f"kafka_broker: {len(countries)} writes pending with broker 2 down, {published:.0f} retry messages "
        f"published, {handled:.0f} handled by CRS, all in MySQL")


def hazelcast_size(t, member):
    try:
        r = call(member, "GET", "/hazelcast/health", timeout=2)
        return r.json().get("clusterSize", 0) if r.status == 200 else 0
    except Exception:  # noqa: BLE001
        return 0


def scenario_hazelcast_members(t):
    if t.env.get("TOPOLOGY_CACHE") != "hazelcast":
        log("hazelcast_members: the topology's cache is not Hazelcast; nothing to test")
        return
    members = t.env["TOPOLOGY_HAZELCAST_MEMBERS"].split(",")
    countries = ["US", "CA", "MX", "BR", "AR", "CL", "PE", "CO"]
    seed(t, countries, "hz")
    # CMS keeps a near cache in front of Hazelcast: reads of documents nobody writes never leave
    # the process. The writer rewrites half of them, so the other replica's near cache drops
    # them (invalidation) and its reads go to Hazelcast, and every write puts to Hazelcast.
    def shared_gets():
        return sum(replica_metric(t, "cms", "bulwark_near_cache_gets_total", {"result": r})
                   for r in ("shared_hit", "miss"))
    shared0 = shared_gets()
    down = []
    try:
        with Load(t, countries, readers=3, written=countries[:4]) as load:
            time.sleep(3)
            # Members 1 and 2: the first of CMS's member list, the ones it talks to first.
            for n in ("1", "2"):
                t.control("kill", "hazelcast", n)
                down.append(n)
            time.sleep(10)
        log("hazelcast_members: " + load.summary())
    finally:
        for n in down:
            t.control("start", "hazelcast", n)
        wait_for("the Hazelcast cluster back at 4 members", lambda: all(hazelcast_size(t, m) == 4 for m in members), 90)
    check(len(load.reads) > 100, "too little load: " + load.summary())
    check(not load.failures, f"{len(load.failures)} failed requests with 2 of 4 members down: {load.failures[:5]}")
    shared = shared_gets() - shared0
    check(shared > 20, f"only {shared:.0f} reads reached Hazelcast: the scenario did not exercise it")
    log(f"hazelcast_members: {shared:.0f} reads went to Hazelcast (near-cache misses), none failed")


def scenario_dashboard(t):
    # Traffic of every kind the panels show, then every panel's query must return data.
    seed(t, ["GB", "IE"], "dashboard")
    for _ in range(20):
        call(t.cms, "GET", "/api/channel-metadata/GB", auth=t.cms_auth)
        call(t.cms, "GET", "/api/channel-metadata/QQ", auth=t.cms_auth)
    run = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "check_dashboard.py"), "live",
                          "--kit", os.path.join(REPO, "examples", "channel-metadata", "deploy"),
                          "--dashboard", "channel-metadata",
                          "--prometheus", t.env["TOPOLOGY_PROMETHEUS_URL"], "--timeout", "60"],
                         capture_output=True, text=True, timeout=120)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    check(run.returncode == 0, "a dashboard panel's query returned no data")


SCENARIOS = {
    "routes": scenario_routes,
    "mysql_outage": scenario_mysql_outage,
    "replica_kill": scenario_replica_kill,
    "kafka_broker": scenario_kafka_broker,
    "hazelcast_members": scenario_hazelcast_members,
    "dashboard": scenario_dashboard,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=list(SCENARIOS))
    ap.add_argument("--topology", default=os.environ.get("TOPOLOGY_DIR", os.path.join(REPO, ".topology")))
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.topology, "env")):
        print(f"no topology at {args.topology} (scripts/topology.sh up)", file=sys.stderr)
        return 1
    t = Topology(args.topology)
    started = time.monotonic()
    try:
        SCENARIOS[args.scenario](t)
    except Failure as e:
        print(f"FAIL {args.scenario}: {e}", file=sys.stderr)
        print(f"{args.scenario}: failed after {time.monotonic() - started:.1f} s")
        return 1
    print(f"{args.scenario}: passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
