#!/usr/bin/env python3
"""Black-box test of tools/loadgen against examples/hello and examples/kv-demo (and two tiny
Python servers for the failures a real server will not produce on cue: one that never answers,
one that closes every connection). Checks counts, the JSON summary, the HTML report, the
control socket, the bounds (-n, --duration, --timeout) and the command-line errors.

    loadgen.py path/to/loadgen path/to/hello path/to/kv-demo

Every process it starts is stopped at the end; every run has a time limit (about 15 s in all)."""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

loadgen, hello_bin, kv_bin = sys.argv[1:4]
work = tempfile.mkdtemp(prefix="loadgen-e2e-")
started = []
failures = 0


def check(condition, what):
    global failures
    print(("ok    " if condition else "FAIL  ") + what, flush=True)
    if not condition:
        failures += 1


def start_service(argv, pattern):
    """Starts a service on port 0 and returns its port, read back from its log line."""
    log = open(os.path.join(work, os.path.basename(argv[0]) + ".log"), "w+")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    started.append(proc)
    deadline = time.time() + 10
    while time.time() < deadline:
        log.seek(0)
        m = re.search(pattern, log.read())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    log.seek(0)
    sys.exit("FAIL: %s did not start: %s" % (argv[0], log.read()))


def run(args, timeout=30):
    """Runs loadgen with args; returns (exit status, stdout, stderr, seconds)."""
    t0 = time.time()
    p = subprocess.run([loadgen] + args, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.time() - t0


def summary(path):
    with open(path) as f:
        return json.load(f)


def silent_server(close_at_once):
    """A listener that never answers (requests time out) or closes each connection at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(256)

    def serve():
        held = []
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            if close_at_once:
                # Once the request came: the client's connect has completed and its request is
                # out, so it meets the reset while it waits for the answer. (Closed before that,
                # the reset could land during the handshake, which is a failed connect: under
                # load that happened to most of the ten.)
                c.settimeout(5)
                try:
                    c.recv(4096)
                except OSError:
                    pass
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()  # linger 0: a reset
            else:
                held.append(c)

    threading.Thread(target=serve, daemon=True).start()
    return s, s.getsockname()[1]


try:
    hello = start_service([hello_bin, "--port", "0", "--threads", "1"], r"listening on [^:]*:(\d+)")
    kv = start_service([kv_bin, "--port", "0", "--threads", "1"], r"listening on http://[^:]*:(\d+)")
    base = "http://127.0.0.1:%d" % hello

    # The course's command line as written, -f with an array of objects sent in turn (PUT to
    # kv-demo: each key's version then says how many times it was written).
    data = os.path.join(work, "data.json")
    with open(data, "w") as f:
        json.dump([{"value": {"n": i}} for i in range(5)], f)
    out_json = os.path.join(work, "kv.json")
    status, out, err, _ = run(["-f", data, "--concurrence", "10", "-n", "1000", "--timeout", "3m", "-m", "PUT", "-q",
                               "--json", out_json, "http://127.0.0.1:%d/api/items/k{seq:0..49}" % kv])
    check(status == 0, "course command line: exit 0 (%s%s)" % (out, err))
    j = summary(out_json)
    check(j["requests"] == 1000 and j["status"]["2xx"] == 1000, "course command line: 1000 requests, 1000 2xx")
    check(j["method"] == "PUT" and j["concurrency"] == 10, "course command line: method and concurrency")
    item = json.load(__import__("urllib.request").request.urlopen("http://127.0.0.1:%d/api/items/k7" % kv))
    check(item["version"] == 20 and item["value"] == {"n": 2}, "each of 50 keys written 20 times, bodies in turn: %s" % item)
    status, out, err, _ = run(["-f", data, "-n", "10", "-q", "--json", out_json, "http://127.0.0.1:%d/api/items/x" % kv])
    check(summary(out_json)["method"] == "POST" and summary(out_json)["status"]["4xx"] == 10 and status == 1,
          "-f implies POST (kv-demo answers 405: counted as 4xx errors, exit 1)")

    # Closed model against hello: exact counts, the JSON summary and the HTML report.
    report = os.path.join(work, "hello.html")
    out_json = os.path.join(work, "hello.json")
    status, out, err, _ = run(["-c", "8", "-n", "5000", "-q", "--json", out_json, "--report", report,
                               "--event", "0.1s=marker one", "-H", "X-Test: 1", "-u", "ann:pw", base + "/hello"])
    j = summary(out_json)
    check(status == 0 and j["requests"] == 5000 and j["errors"]["total"] == 0, "closed model: 5000 requests, no error")
    check(sum(j["timeline"]["requests"]) == 5000, "closed model: the time series adds up to the count")
    lat = j["latency_ms"]
    check(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"], "percentiles ordered: %s" % lat)
    check(re.search(r"5000 requests in [\d.]+ s, [\d.]+ requests/s", out) is not None, "summary line: " + out.splitlines()[0])
    html = open(report).read()
    check(all('id="%s"' % i in html for i in ("latency", "throughput", "errors", "histogram")), "report: every chart")
    check("marker one" in html and 'class="event"' in html, "report: the --event mark")
    check(re.search(r"<(script|link|img)[^>]*(src|href)=", html) is None, "report: self-contained")

    # Open model: a fixed schedule, bounded by --duration; latency from the scheduled time.
    # A control-socket client marks an event meanwhile.
    control = os.path.join(work, "control.sock")
    out_json = os.path.join(work, "open.json")
    proc = subprocess.Popen([loadgen, "--rate", "500", "-d", "2s", "-c", "4", "--control", control, "--progress", "0.5s",
                             "--json", out_json, "--report", report, base + "/hello?id={random:1..99}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started.append(proc)
    deadline = time.time() + 5
    while not os.path.exists(control) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    c = socket.socket(socket.AF_UNIX)
    c.connect(control)
    c.sendall(b"database stopped\n")
    answer = c.recv(16)
    c.close()
    out, err = proc.communicate(timeout=10)
    j = summary(out_json)
    check(answer == b"ok\n", "control socket answers ok")
    check(proc.returncode == 0 and 990 <= j["requests"] <= 1000, "open model: 500/s for 2 s = %d requests" % j["requests"])
    check(j["model"] == "open" and 1.9 < j["duration_s"] < 2.5, "open model: ran for %.2f s" % j["duration_s"])
    ev = j["events"]
    check(len(ev) == 1 and ev[0]["label"] == "database stopped" and 0.3 < ev[0]["at_s"] < 1.5,
          "control socket: the event at %s" % ev)
    check("database stopped" in open(report).read(), "report: the control socket's mark")
    check(len([l for l in err.splitlines() if "done" in l]) >= 2, "plain progress lines when not a terminal: %r" % err)
    check(not os.path.exists(control), "control socket removed at the end")

    # Errors by kind, no hidden retries: refused, reset, timeout, 4xx.
    out_json = os.path.join(work, "errors.json")
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()
    status, out, err, _ = run(["-n", "20", "-c", "2", "-q", "--json", out_json, "http://127.0.0.1:%d/" % closed_port])
    j = summary(out_json)
    check(status == 1 and j["errors"]["refused"] == 20 and j["requests"] == 20, "refused: 20 requests, 20 refused")
    status, out, err, _ = run(["-n", "30", "-c", "3", "-q", "--json", out_json, base + "/missing"])
    check(summary(out_json)["status"]["4xx"] == 30 and summary(out_json)["errors"]["4xx"] == 30, "404: 30 4xx errors")
    reset_sock, reset_port = silent_server(close_at_once=True)
    status, out, err, _ = run(["-n", "10", "-c", "1", "-q", "--json", out_json, "http://127.0.0.1:%d/" % reset_port])
    j = summary(out_json)
    check(j["requests"] == 10 and j["errors"]["reset"] == 10,
          "reset: 10 requests, each failed once (GET not retried): %s" % j["errors"])
    mute_sock, mute_port = silent_server(close_at_once=False)
    status, out, err, took = run(["-n", "4", "-c", "4", "-q", "--request-timeout", "300ms", "--json", out_json,
                                  "http://127.0.0.1:%d/" % mute_port])
    j = summary(out_json)
    check(j["errors"]["timeout"] == 4 and took < 5, "request timeout: 4 timeouts in %.1f s" % took)

    # --timeout bounds the whole run: in-flight requests are unfinished.
    status, out, err, took = run(["-n", "100", "-c", "5", "-q", "--timeout", "1s", "--json", out_json,
                                  "http://127.0.0.1:%d/" % mute_port])
    j = summary(out_json)
    check(status == 1 and j["cut_short"] and j["unfinished"] == 5 and took < 4,
          "--timeout 1s: cut short after %.1f s, %d unfinished" % (took, j["unfinished"]))

    # Bad command lines: exit 2 and a message naming the problem, nothing sent.
    for args, message in ((["--concurence", "3", base], "unknown option '--concurence'"),
                          (["-n", "x", base], "-n wants a whole number"),
                          (["--timeout", "3 minutes", base], "bad duration"),
                          (["https://example.com/"], "https is not supported"),
                          (["-f", os.path.join(work, "none.json"), base], "cannot be read"),
                          ([], "no URL given")):
        status, out, err, _ = run(args)
        check(status == 2 and message in err, "bad command line %s -> exit 2, %r" % (args, err.strip()))
    status, out, err, _ = run(["--help"])
    check(status == 0 and "--concurrence" in out, "--help")
finally:
    for p in started:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    subprocess.run(["rm", "-rf", work])

print("%d failure(s)" % failures)
sys.exit(1 if failures else 0)
