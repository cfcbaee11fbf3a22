#!/usr/bin/env python3
"""Black-box test of the `checkout` executable (examples/checkout) over HTTP: start it on port 0
(the kernel picks a free one, read back from its log), check a few contract answers, run the
consistency scenario over real connections (1 item with stock 100, 1000 users with credit 1,
1000 orders of that item for random users, 1000 checkouts sent at once from 200 connections:
exactly 100 succeed, stock 0, total credit 900, read right after the last answer), then stop it
with SIGTERM and check that it exits cleanly. Bounded: every request has a 30 s timeout, the
whole run a few seconds.

usage: checkout.py path/to/checkout
"""
import concurrent.futures
import http.client
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

binary = sys.argv[1]
log = tempfile.NamedTemporaryFile(prefix="checkout-e2e-", suffix=".log", delete=False)
proc = subprocess.Popen([binary, "--port", "0"], stdout=log, stderr=subprocess.STDOUT)


def fail(why):
    proc.kill()
    print("FAIL:", why)
    print(open(log.name).read())
    sys.exit(1)


port = None
for _ in range(100):
    m = re.search(r"listening on http://[^:]+:(\d+)", open(log.name).read())
    if m:
        port = int(m.group(1))
        break
    if proc.poll() is not None:
        fail("exited before listening")
    time.sleep(0.1)
if port is None:
    fail("no 'listening on' line within 10 s")

local = threading.local()


def call(method, path):
    if not hasattr(local, "conn"):
        local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    local.conn.request(method, path)
    r = local.conn.getresponse()
    return r.status, r.read().decode(), r.getheader("Content-Type", "")


def expect(method, path, status, body=None):
    got = call(method, path)
    if got[0] != status or (body is not None and got[1] != body):
        fail(f"{method} {path} -> {got[0]} {got[1]!r}, wanted {status} {body!r}")
    return got


def value(method, path, field):
    status, body, content_type = expect(method, path, 200)
    if content_type != "application/json":
        fail(f"{method} {path}: Content-Type {content_type}")
    return json.loads(body)[field]


# A few contract rows and refusals.
expect("GET", "/health", 200)
expect("GET", "/stock/find/7", 400, "Item: 7 not found!")
expect("POST", "/payment/pay/nobody/1", 400, "User: nobody not found!")
expect("POST", "/stock/add/x/-1", 400, "Item: x not found!")
expect("GET", "/elsewhere", 400, "No such path: GET /elsewhere")

# Consistency.
expect("POST", "/stock/batch_init/1/100/1", 200, '{"msg":"Batch init for stock successful"}')
expect("POST", "/payment/batch_init/1000/1", 200, '{"msg":"Batch init for users successful"}')
rng = random.Random(15)
orders = []
for _ in range(1000):
    order = value("POST", f"/orders/create/{rng.randrange(1000)}", "order_id")
    expect("POST", f"/orders/addItem/{order}/0/1", 200)
    orders.append(order)

start = threading.Barrier(200)


def checkout_some(part):
    start.wait(timeout=30)
    return [call("POST", f"/orders/checkout/{o}")[:2] for o in orders[part::200]]


with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
    answers = [a for part in pool.map(checkout_some, range(200)) for a in part]
succeeded = sum(1 for status, _ in answers if status == 200)
refused = sum(1 for status, _ in answers if status == 400)
others = [a for a in answers if a[0] not in (200, 400)]
if others:
    fail(f"answers other than 200/400: {others[:5]}")
stock = value("GET", "/stock/find/0", "stock")
credit = sum(value("GET", f"/payment/find_user/{u}", "credit") for u in range(1000))
if (succeeded, refused, stock, credit) != (100, 900, 0, 900):
    fail(f"{succeeded} succeeded, {refused} refused, stock {stock}, total credit {credit}; "
         "wanted 100, 900, 0, 900")
texts = {body for status, body in answers if status == 400}
if not texts <= {"Out of stock on item_id: 0", "User out of credit"}:
    fail(f"unexpected refusal texts: {texts}")

proc.send_signal(signal.SIGTERM)
try:
    code = proc.wait(timeout=10)
except subprocess.TimeoutExpired:
    fail("did not stop within 10 s of SIGTERM")
if code != 0:
    fail(f"exited with status {code}")
if "checkout: stopping" not in open(log.name).read():
    fail("no graceful stop in the log")
print(f"checkout e2e: contract rows as expected; 1000 concurrent checkouts: {succeeded} succeeded, "
      f"stock {stock}, total credit {credit}; clean stop on SIGTERM")
