"""Wrong sign-ins against a running portal, and a count of the answers.

    python3 bench/logins.py PORT burst COUNT ADDRESSES
    python3 bench/logins.py PORT rate PER_SECOND SECONDS

`burst` sends COUNT sign-ins at once (threads released together), from one
client address (ADDRESSES=1: the socket's own) or from COUNT addresses told by
`X-Forwarded-For` (the portal must trust 127.0.0.1 as a proxy). `rate` starts
PER_SECOND sign-ins a second for SECONDS, each from a new forwarded address, so
that no address throttle is reached. Every sign-in names an unknown account
(the dummy hash: the same argon2 work as a known one).

Prints one line: `answers=401:N,503:N,... p50_ms=... p99_ms=... max_ms=...`
(sign-in latency, from sending the form to the whole answer).

Used by bench/login_flood.sh.
"""
import http.client
import re
import sys
import threading
import time
import urllib.parse
from collections import Counter


def session(port):
    """A session cookie and its CSRF token, from GET /login."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login")
    res = conn.getresponse()
    html = res.read().decode()
    cookie = "; ".join(v.split(";", 1)[0] for k, v in res.getheaders() if k.lower() == "set-cookie")
    token = re.search(r'name="csrf_token" value="([^"]*)"', html).group(1)
    conn.close()
    return cookie, token


class Run:
    def __init__(self, port):
        self.port = port
        self.cookie, self.token = session(port)
        self.answers = Counter()
        self.latencies = []
        self.lock = threading.Lock()

    def login(self, n, forwarded):
        body = urllib.parse.urlencode(
            {"csrf_token": self.token, "email": f"flood{n}@example.test", "password": "not the password"}
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": self.cookie}
        if forwarded:
            headers["X-Forwarded-For"] = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        start = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            conn.request("POST", "/login", body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            status = str(res.status)
            if res.status in (429, 503) and not res.getheader("retry-after"):
                status += "-without-retry-after"
            conn.close()
        except OSError as e:
            status = type(e).__name__
        took = (time.monotonic() - start) * 1000
        with self.lock:
            self.answers[status] += 1
            self.latencies.append(took)

    def report(self):
        lat = sorted(self.latencies) or [0.0]
        pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
        answers = ",".join(f"{k}:{v}" for k, v in sorted(self.answers.items()))
        print(f"answers={answers} p50_ms={pick(0.5):.0f} p99_ms={pick(0.99):.0f} max_ms={lat[-1]:.0f}")


def burst(run, count, addresses):
    gate = threading.Barrier(count)

    def one(n):
        gate.wait()
        run.login(n, addresses > 1)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def rate(run, per_second, seconds):
    threads, start = [], time.monotonic()
    for n in range(int(per_second * seconds)):
        delay = start + n / per_second - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=run.login, args=(n, True))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


def main():
    port, mode, a, b = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    run = Run(port)
    if mode == "burst":
        burst(run, int(a), int(b))
    else:
        rate(run, a, b)
    run.report()


if __name__ == "__main__":
    main()
