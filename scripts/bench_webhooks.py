"""Webhook delivery benchmark driver (scripts/bench-webhooks.sh starts the server and calls this).

Standard library only. A threaded HTTP receiver on 127.0.0.1 serves one path per subscription
(`/hook/<n>`, answering 200 at once) and `/hang` (answers only after 60 s, longer than the
server's attempt timeout). Writers create model versions through the MLflow API at a fixed
rate, spread over 20 models; every subscription listens to `model_version.created`. Latency is
the receiver's arrival time minus the event's `timestamp` in the payload (set when the command
was decided, just before its commit: an upper bound on commit -> first attempt). The delivery
backlog (pending rows) is read from PostgreSQL every 5 s.

usage: bench_webhooks.py URL TOKEN PG_URL SCENARIO
  SCENARIO = latency | scale:<subs>:<events_per_s>:<seconds> | hang
"""

import json
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

URL, TOKEN, PG, SCENARIO = sys.argv[1:5]
MODELS = 20
lock = threading.Lock()
arrivals = []  # (path, delivery id, latency ms)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        now = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/hang":
            time.sleep(60)
        else:
            try:
                ts = json.loads(body)["timestamp"]
                at = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                with lock:
                    arrivals.append((self.path, self.headers.get("webhook-id"), (now - at) * 1000))
            except (ValueError, KeyError):
                pass
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


receiver = Server(("127.0.0.1", 0), Handler)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
RECV = f"http://127.0.0.1:{receiver.server_address[1]}"


def call(path, body):
    req = urllib.request.Request(
        URL + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def backlog():
    out = subprocess.run(["psql", PG, "-tAc", "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"],
                         capture_output=True, text=True)
    return int(out.stdout.strip() or -1)


def subscribe(n, path):
    call("/api/2.0/mlflow/webhooks", {"name": f"bench-{n}", "url": RECV + path, "events": ["model_version.created"]})


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def drive(rate, seconds, tag):
    """Creates `rate` versions a second for `seconds`; returns how many were written."""
    written = [0]
    stop = time.time() + seconds
    samples = []

    def watch():
        start = time.time()
        while time.time() < stop + 30:
            samples.append((round(time.time() - start), backlog()))
            time.sleep(5)
            if time.time() > stop and samples[-1][1] == 0:
                break

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(max_workers=16) as pool:
        t0 = time.time()
        i = 0
        while time.time() < stop:
            due = t0 + i / rate
            if due > time.time():
                time.sleep(due - time.time())
            pool.submit(lambda i=i: (call("/api/2.0/mlflow/model-versions/create",
                                           {"name": f"{tag}-{i % MODELS}", "source": f"s3://b/{i}"}),
                                      written.__setitem__(0, written[0] + 1)))
            i += 1
    actual = written[0] / seconds
    watcher.join()
    return written[0], actual, samples


def setup_models(tag):
    for m in range(MODELS):
        call("/api/2.0/mlflow/registered-models/create", {"name": f"{tag}-{m}"})


def wait_for(n, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        with lock:
            if len(arrivals) >= n:
                return
        time.sleep(0.2)


def report(label, paths=None):
    with lock:
        lat = [a[2] for a in arrivals if paths is None or a[0] in paths]
        ids = [a[1] for a in arrivals if paths is None or a[0] in paths]
    dup = len(ids) - len(set(ids))
    print(f"{label}: deliveries={len(lat)} duplicates={dup} p50={pct(lat, 50):.1f}ms "
          f"p99={pct(lat, 99):.1f}ms max={max(lat) if lat else float('nan'):.1f}ms", flush=True)


kind = SCENARIO.split(":")[0]
if kind == "latency":
    setup_models("lat")
    for n in range(5):
        subscribe(n, f"/hook/{n}")
    written, actual, samples = drive(20, 20, "lat")
    wait_for(written * 5)
    print(f"latency: 5 subscriptions, {written} events at {actual:.1f}/s for 20 s")
    report("healthy receivers")
    print("backlog (s, pending):", samples)
elif kind == "scale":
    _, subs, rate, seconds = SCENARIO.split(":")
    subs, rate, seconds = int(subs), float(rate), int(seconds)
    setup_models("scale")
    for n in range(subs):
        subscribe(n, f"/hook/{n}")
    written, actual, samples = drive(rate, seconds, "scale")
    wait_for(written * subs, timeout=300)
    print(f"scale: {subs} subscriptions, {written} events at {actual:.1f}/s for {seconds} s "
          f"= {written * subs} deliveries ({written * subs / seconds:.0f}/s offered)")
    report("all receivers")
    print("backlog (s, pending):", samples)
elif kind == "hang":
    setup_models("hang")
    healthy = {f"/hook/{n}" for n in range(10)}
    for n in range(10):
        subscribe(n, f"/hook/{n}")
    written, actual, _ = drive(10, 20, "hang")
    wait_for(written * 10)
    print(f"hang baseline: 10 healthy subscriptions, {written} events at {actual:.1f}/s for 20 s")
    report("healthy, no hanging receiver", healthy)
    with lock:
        arrivals.clear()
    subscribe(99, "/hang")
    written, actual, samples = drive(10, 20, "hang")
    wait_for(written * 10)
    print(f"hang: same 10 + 1 receiver that never answers, {written} events at {actual:.1f}/s for 20 s")
    report("healthy, with a hanging receiver", healthy)
    print("backlog (s, pending; includes the hanging receiver's retries):", samples)
receiver.shutdown()
