"""Webhook deliveries checked by the Standard Webhooks reference library
(`standardwebhooks` from PyPI), independent of the server's own code: a
live server (BIN, fresh SQLite in DATA, loopback allowed) delivers to a
receiver started here; every delivery must verify with the endpoint's
secret, and fail with another; after a rotation with a grace, each
delivery must verify with the new secret and with the old one.
"""

import http.server
import os
import re
import secrets
import subprocess
import threading
import time

import requests
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from checks import Checks

BIN, DATA, PORT, HOOK = os.environ["BIN"], os.environ["DATA"], int(os.environ["PORT"]), int(os.environ["HOOK_PORT"])
BASE = f"http://127.0.0.1:{PORT}"
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
check = Checks("webhooks (reference library)")


received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def delivery(n):
    """The n-th delivery received (waits up to 20 s)."""
    for _ in range(200):
        if len(received) > n:
            return received[n]
        time.sleep(0.1)
    check(f"delivery {n + 1} arrives", False, "(none within 20 s)")


def verifies(secret, headers, body):
    try:
        return Webhook(secret).verify(body, {h: headers[h] for h in HEADERS})
    except WebhookVerificationError:
        return None


env = dict(os.environ, LATCHKEY_DATA_DIR=DATA, LATCHKEY_BIND=f"127.0.0.1:{PORT}",
           LATCHKEY_SECRET=secrets.token_urlsafe(32), LATCHKEY_WEBHOOK_ALLOW_PRIVATE="true")
for name in ("DATABASE_URL", "REDIS_URL", "LATCHKEY_CONFIG", "LATCHKEY_PUBLIC_URL", "BIN", "DATA", "PORT", "HOOK_PORT"):
    env.pop(name, None)
password = "webhook owner password " + secrets.token_hex(8)
subprocess.run([BIN, "user", "create", "--email", "owner@hooks.test", "--team", "Hooks"],
               input=password + "\n", text=True, env=env, check=True, capture_output=True)
server = subprocess.Popen([BIN, "serve"], env=env, stdout=open(os.path.join(DATA, "server.log"), "w"),
                          stderr=subprocess.STDOUT)
threading.Thread(target=http.server.HTTPServer(("127.0.0.1", HOOK), Receiver).serve_forever, daemon=True).start()
try:
    for _ in range(100):
        try:
            requests.get(BASE + "/readyz", timeout=1).raise_for_status()
            break
        except requests.RequestException:
            time.sleep(0.1)
    web = requests.Session()

    def csrf(html):
        return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)

    def form(path, fields):
        page = web.get(BASE + path).text
        extra = {"csrf_token": csrf(page)}
        sub = re.search(r'name="submission" value="([^"]*)"', page)
        if sub:
            extra["submission"] = sub.group(1)
        return web.post(BASE + path, data={**extra, **fields})

    page = web.get(BASE + "/login").text
    web.post(BASE + "/login", data={"csrf_token": csrf(page), "email": "owner@hooks.test", "password": password})
    made = form("/settings/developer/webhooks",
                {"url": f"http://127.0.0.1:{HOOK}/hook", "description": "reference check", "all_events": "on"})
    found = re.search(r'id="secret"[^>]*>\s*(?:<[^>]+>\s*)*(whsec_[A-Za-z0-9+/=]+)', made.text)
    check("the endpoint's secret is shown once", found is not None, made.text[:500])
    first_secret = found.group(1)
    endpoint = re.search(r'/settings/developer/webhooks/(we_[A-Za-z0-9]+)', made.text).group(1)
    check("the secret is not shown again", first_secret not in web.get(BASE + f"/settings/developer/webhooks/{endpoint}").text)

    def new_key(name):
        page = web.get(BASE + "/settings/team").text
        res = web.post(BASE + "/api/v1/api-keys", json={"name": name, "scopes": ["templates:read"]},
                       headers={"X-CSRF-Token": csrf(page)})
        check(f"key {name!r} created", res.status_code == 201, res.text)
        return res.json()["data"]["key"]

    key = new_key("first")
    headers, body = delivery(0)
    payload = verifies(first_secret, headers, body)
    check("a delivery verifies with the endpoint's secret", payload is not None, repr(headers))
    check("it is api_key.created", payload["type"] == "api_key.created", repr(payload))
    check("another secret does not verify it", verifies("whsec_" + "A" * 44, headers, body) is None)
    check("the message id is the webhook-id", headers["webhook-id"].startswith("msg_"), headers["webhook-id"])
    check("the key's secret is not in the payload", key not in body.decode())

    rotated = form(f"/settings/developer/webhooks/{endpoint}/rotate", {"grace": "3600"})
    found = re.search(r'id="secret"[^>]*>\s*(?:<[^>]+>\s*)*(whsec_[A-Za-z0-9+/=]+)', rotated.text)
    check("the rotation shows the new secret once", found is not None, rotated.text[:500])
    second_secret = found.group(1)
    check("the new secret is another", second_secret != first_secret)
    # The rotation's own event (webhook.secret_rotated is not a webhook event)
    # then a key: the next delivery is signed by both secrets in the grace.
    new_key("second")
    headers, body = delivery(1)
    check("during the grace a delivery verifies with the new secret", verifies(second_secret, headers, body) is not None)
    check("and with the old one", verifies(first_secret, headers, body) is not None, headers["webhook-signature"])
    check("it carries two signatures", len(headers["webhook-signature"].split(" ")) == 2, headers["webhook-signature"])
finally:
    server.terminate()
    server.wait(timeout=10)
check.done()
