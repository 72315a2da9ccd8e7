"""Sends COUNT identical requests, one after the other, over one keep-alive
HTTP/1.1 connection, and fails unless every answer has the expected status.

    python3 bench/requests.py PORT COUNT METHOD PATH EXPECT [HEADER:VALUE ...] [--body BODY]

Used by bench/instructions.sh: the server runs under callgrind, so only the
number of requests matters, not how fast this client is.
"""
import http.client
import sys


def main():
    args = sys.argv[1:]
    body = None
    if "--body" in args:
        i = args.index("--body")
        body = args[i + 1].encode()
        del args[i : i + 2]
    port, count, method, path, expect = int(args[0]), int(args[1]), args[2], args[3], int(args[4])
    headers = dict(h.split(":", 1) for h in args[5:])
    if body is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for n in range(count):
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        res.read()
        if res.status != expect:
            sys.exit(f"request {n + 1}: {method} {path} answered {res.status}, expected {expect}")
        if res.getheader("connection", "").lower() == "close":
            sys.exit(f"request {n + 1}: the server closed the connection")
    conn.close()


if __name__ == "__main__":
    main()
