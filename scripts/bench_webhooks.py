"""Webhook delivery benchmark driver (scripts/bench-webhooks.sh starts the server and calls this).

Standard library only. A threaded HTTP receiver on 127.0.0.1 serves one path per subscription
(`/hook/<n>`, answering 200 at once) and `/hang` (answers only after 60 s, longer than the
server's attempt timeout). Writers create model versions through the MLflow API at a fixed
rate, spread over 20 models; every subscription listens to `model_version.created`. Latency is
the receiver's arrival time minus the event's `timestamp` in the payload (set when the command
was decided, just before its commit: an upper bound on commit -> first attempt). The delivery
backlog (pending rows) is read from PostgreSQL every 5 s, and during the sustained-load
scenario `top` is sampled every 5 s (CPU % per command, summed over its processes), to tell
which component saturates.

With WEBHOOK_RECEIVER_BIN set (scripts/bench-webhooks.sh does it for RECEIVER=rust) the
receiver is examples/webhook_receiver.rs instead: the same paths and the same latency reading,
on tokio, for rates the standard-library receiver cannot take.

usage: bench_webhooks.py URL TOKEN PG_URL SCENARIO
  SCENARIO = latency | scale:<subs>:<events_per_s>:<seconds> | hang
"""

import json
import os
import subprocess
from collections import defaultdict
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


RUST_RECEIVER = os.environ.get("WEBHOOK_RECEIVER_BIN")
if RUST_RECEIVER:
    receiver_process = subprocess.Popen([RUST_RECEIVER], stdout=subprocess.PIPE, text=True)
    RECV = f"http://127.0.0.1:{receiver_process.stdout.readline().strip()}"
else:
    receiver = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    RECV = f"http://127.0.0.1:{receiver.server_address[1]}"


def receiver_stats(paths=None):
    query = "?paths=" + ",".join(sorted(paths)) if paths else ""
    with urllib.request.urlopen(RECV + "/stats" + query, timeout=30) as r:
        return json.loads(r.read())


def arrived():
    if RUST_RECEIVER:
        return receiver_stats()["deliveries"]
    with lock:
        return len(arrivals)


def clear_arrivals():
    if RUST_RECEIVER:
        urllib.request.urlopen(urllib.request.Request(RECV + "/reset", data=b"", method="POST"), timeout=30).close()
    else:
        with lock:
            arrivals.clear()


def cpu_sample():
    """CPU % per command over one second (top's second frame), summed over its processes."""
    out = subprocess.run(["top", "-b", "-n", "2", "-d", "1", "-w", "512"], capture_output=True, text=True).stdout
    frame = out.split("\ntop - ")[-1]
    usage, header = defaultdict(float), None
    for line in frame.splitlines():
        cols = line.split()
        if cols and cols[0] == "PID":
            header = cols
            continue
        if header and len(cols) >= len(header):
            try:
                usage[cols[-1][:15]] += float(cols[header.index("%CPU")].replace(",", "."))
            except ValueError:
                pass
    return {k: round(v) for k, v in sorted(usage.items(), key=lambda kv: -kv[1])[:4] if v >= 5}


def call(path, body):
    req = urllib.request.Request(
        URL + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def backlog():
    """(deliveries pending, events not yet fanned out): the leader sends new events before it
    writes their rows, so events behind the cursor are backlog too."""
    out = subprocess.run(["psql", PG, "-tAc",
                          "SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') || ',' || "
                          "((SELECT COALESCE(MAX(position), 0) FROM events) - (SELECT position FROM webhook_cursor))"],
                         capture_output=True, text=True)
    try:
        pending, behind = out.stdout.strip().split(",")
        return int(pending), int(behind)
    except ValueError:
        return -1, -1


def subscribe(n, path):
    call("/api/2.0/mlflow/webhooks", {"name": f"bench-{n}", "url": RECV + path, "events": ["model_version.created"]})


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


cpu = []  # (s, {command: %CPU}) during the sustained-load scenario


def drive(rate, seconds, tag, sample_cpu=False):
    """Creates `rate` versions a second for `seconds`; returns how many were written."""
    written = [0]
    stop = time.time() + seconds
    samples = []

    def watch():
        start = time.time()
        while time.time() < stop + 30:
            samples.append((round(time.time() - start), *backlog()))
            time.sleep(5)
            if time.time() > stop and samples[-1][1:] == (0, 0):
                break

    def watch_cpu():
        start = time.time()
        while time.time() < stop:
            cpu.append((round(time.time() - start), cpu_sample()))
            time.sleep(4)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    if sample_cpu:
        threading.Thread(target=watch_cpu, daemon=True).start()
    with ThreadPoolExecutor(max_workers=16) as pool:
        t0 = time.time()
        i = 0
        while time.time() < stop:
            due = t0 + i / rate
            # One reading of the clock: checked and slept on two readings, the wait could turn
            # negative in between (a ValueError that ended a run).
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
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
    """Waits until `n` deliveries arrived; returns the seconds waited."""
    start = time.time()
    end = start + timeout
    while time.time() < end:
        if arrived() >= n:
            break
        time.sleep(0.2)
    return time.time() - start


def report(label, paths=None):
    if RUST_RECEIVER:
        s = receiver_stats(paths)
        nan = float("nan")
        print(f"{label}: deliveries={s['deliveries']} duplicates={s['duplicates']} p50={s['p50'] or nan:.1f}ms "
              f"p99={s['p99'] or nan:.1f}ms max={s['max'] or nan:.1f}ms", flush=True)
        return
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
    print("backlog (s, pending, events behind the cursor):", samples)
elif kind == "scale":
    _, subs, rate, seconds = SCENARIO.split(":")
    subs, rate, seconds = int(subs), float(rate), int(seconds)
    setup_models("scale")
    for n in range(subs):
        subscribe(n, f"/hook/{n}")
    t0 = time.time()
    written, actual, samples = drive(rate, seconds, "scale", sample_cpu=True)
    drained = wait_for(written * subs, timeout=300)
    got = arrived()
    print(f"scale: {subs} subscriptions, {written} events at {actual:.1f}/s for {seconds} s "
          f"= {written * subs} deliveries ({written * subs / seconds:.0f}/s offered); "
          f"{got} arrived in {time.time() - t0:.0f} s ({got / (time.time() - t0):.0f}/s delivered, "
          f"{drained:.0f} s of it after the writes stopped)")
    report("all receivers")
    print("backlog (s, pending, events behind the cursor):", samples)
    print("cpu % (s, {command: %}):", cpu)
elif kind == "hang":
    setup_models("hang")
    healthy = {f"/hook/{n}" for n in range(10)}
    for n in range(10):
        subscribe(n, f"/hook/{n}")
    written, actual, _ = drive(10, 20, "hang")
    wait_for(written * 10)
    print(f"hang baseline: 10 healthy subscriptions, {written} events at {actual:.1f}/s for 20 s")
    report("healthy, no hanging receiver", healthy)
    clear_arrivals()
    subscribe(99, "/hang")
    written, actual, samples = drive(10, 20, "hang")
    wait_for(written * 10)
    print(f"hang: same 10 + 1 receiver that never answers, {written} events at {actual:.1f}/s for 20 s")
    report("healthy, with a hanging receiver", healthy)
    print("backlog (s, pending, events behind the cursor; pending includes the hanging receiver's retries):", samples)
if RUST_RECEIVER:
    receiver_process.terminate()
else:
    receiver.shutdown()
