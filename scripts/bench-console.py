"""Web console benchmark (issue #19): seeds MODELS models of VERSIONS versions each through the
API, signs in through the dev sign-in form, then measures the models page, a model page and
/healthz (the floor: same server, same connection handling) and the model page's weight.
Run by scripts/bench-console.sh, which starts the server. Standard library only."""
import concurrent.futures as cf
import http.client
import json
import os
import re
import statistics
import sys
import time
import urllib.parse

HOST, PORT = os.environ["HOST"], int(os.environ["PORT"])
TOKEN = os.environ["ADMIN"]
MODELS = int(os.environ.get("MODELS", "1000"))
VERSIONS = int(os.environ.get("VERSIONS", "100"))
SAMPLES = int(os.environ.get("SAMPLES", "300"))
THREADS = int(os.environ.get("THREADS", "8"))


def conn():
    return http.client.HTTPConnection(HOST, PORT, timeout=60)


def call(c, method, path, body=None, headers=None):
    h = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
    r = c.getresponse()
    data = r.read()
    if r.status >= 400:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
    return data


def seed_model(i):
    c = conn()
    name = f"model-{i:04d}"
    call(c, "POST", "/api/v1/models", {"name": name, "description": f"benchmark model {i}",
                                        "tags": {"team": f"team-{i % 10}"}})
    for v in range(VERSIONS):
        call(c, "POST", f"/api/v1/models/{name}/versions",
             {"source": f"s3://bench/{name}/{v}", "metrics": {"auc": 0.8 + v / 1000}})
    # A few stage holders so the models page has something to show.
    call(c, "POST", f"/api/v1/models/{name}/versions/1/stage", {"stage": "Staging"})
    c.close()


def sign_in():
    c = conn()
    c.request("GET", "/signin")
    r = c.getresponse()
    html = r.read().decode()
    signin_cookie = re.search(r"ml_signin=([^;]+)", r.getheader("set-cookie")).group(1)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    body = urllib.parse.urlencode({"csrf": csrf, "subject": "bench", "group": "ml-readers"})
    c.request("POST", "/signin/dev", body=body, headers={
        "cookie": f"ml_signin={signin_cookie}",
        "content-type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    r.read()
    return re.search(r"ml_session=([^;]+)", r.getheader("set-cookie")).group(1)


def measure(path, cookie):
    c = conn()
    times, size = [], 0
    for n in range(SAMPLES + 20):
        start = time.perf_counter()
        c.request("GET", path, headers={"cookie": f"ml_session={cookie}"})
        r = c.getresponse()
        data = r.read()
        elapsed = (time.perf_counter() - start) * 1000
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.status} {data[:300]!r}")
        size = len(data)
        if n >= 20:  # warm-up excluded
            times.append(elapsed)
    c.close()
    times.sort()
    return {"p50": statistics.median(times), "p95": times[int(len(times) * 0.95) - 1],
            "max": times[-1], "bytes": size}


def main():
    started = time.time()
    with cf.ThreadPoolExecutor(THREADS) as pool:
        for n, _ in enumerate(pool.map(seed_model, range(MODELS)), 1):
            if n % 100 == 0:
                print(f"seeded {n} models ({time.time() - started:.0f} s)", file=sys.stderr)
    seed_secs = time.time() - started
    cookie = sign_in()
    results = {
        "healthz": measure("/healthz", cookie),
        "models page": measure("/models", cookie),
        f"models page (after model-{MODELS // 2:04d})":
            measure(f"/models?after=model-{MODELS // 2:04d}", cookie),
        f"model page ({VERSIONS} versions)": measure(f"/models/model-{MODELS // 3:04d}", cookie),
    }
    assets = 0
    c = conn()
    for a in ["console.css", "console.js", "htmx.min.js"]:
        c.request("GET", f"/console/assets/{a}")
        assets += len(c.getresponse().read())
    weight = results[f"model page ({VERSIONS} versions)"]["bytes"] + assets
    print(f"seeded {MODELS} models x {VERSIONS} versions in {seed_secs:.0f} s")
    print(f"{'path':34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'bytes':>8}")
    for k, v in results.items():
        print(f"{k:34} {v['p50']:8.2f} {v['p95']:8.2f} {v['max']:8.2f} {v['bytes']:8d}")
    print(f"model page weight (HTML + CSS + JS, uncompressed): {weight} bytes")
    print(f"load average: {open('/proc/loadavg').read().strip()}")


main()
