"""Drives a live server through a Python client generated from its own
OpenAPI document (openapi-python-client), as an operator's integration
would: every call goes through the generated functions and models, and
every answer must parse into the model the document promises.

Run by .ci/fuzz-api with CLIENT_DIR (the generated package's folder),
BASE, TEAM_KEY (a team key with every scope) and SERVICE_KEY (a service
key with `introspect` and `leaks:report`) in the environment.
"""

import os
import sys

sys.path.insert(0, os.environ["CLIENT_DIR"])

from checks import Checks  # noqa: E402

from latchkey_client import AuthenticatedClient, Client  # noqa: E402
from latchkey_client.api.api_keys import (  # noqa: E402
    api_key_usage,
    create_api_key,
    get_api_key,
    list_api_keys,
    revoke_api_key,
    roll_api_key,
    update_api_key,
)
from latchkey_client.api.credentials import auth_test, forward_auth  # noqa: E402
from latchkey_client.api.leaked_credentials import report_leaked_keys  # noqa: E402
from latchkey_client.api.o_auth_2_0 import authorization_server_metadata, introspect  # noqa: E402
from latchkey_client.models import (  # noqa: E402
    AuthTestAnswer,
    AuthorizationServerMetadata,
    CreateApiKey,
    CreateApiKeyScopesItem,
    ErrorEnvelope,
    IntrospectForm,
    LeakReport,
    ListApiKeysStatus,
    PageKeyView,
    RollApiKey,
    SuccessKeyView,
    SuccessLeakResults,
    SuccessNewKey,
    SuccessUsageReport,
    UpdateApiKey,
)

BASE = os.environ["BASE"]
check = Checks("generated client")


def keyed(key):
    return AuthenticatedClient(base_url=BASE, token=key, prefix="", auth_header_name="X-API-Key")


team = keyed(os.environ["TEAM_KEY"])
service = AuthenticatedClient(base_url=BASE, token=os.environ["SERVICE_KEY"])  # Bearer

answer = auth_test.sync(client=team)
check("auth/test parses", isinstance(answer, AuthTestAnswer) and answer.authenticated, repr(answer))

meta = authorization_server_metadata.sync(client=Client(base_url=BASE))
check("OAuth metadata parses", isinstance(meta, AuthorizationServerMetadata), repr(meta))

body = CreateApiKey(
    name="generated client",
    scopes=[CreateApiKeyScopesItem("templates:read"), CreateApiKeyScopesItem("messages:send")],
    description="made through the generated client",
    expires_in_days=1,
    allowed_ips=["127.0.0.1/32"],
)
created = create_api_key.sync(client=team, body=body)
check("create parses, the secret once", isinstance(created, SuccessNewKey) and created.data.key, repr(created))
new = created.data
key_id, secret = new.id, new.key

got = get_api_key.sync(key_id, client=team)
check("get parses, no secret", isinstance(got, SuccessKeyView) and "key" not in got.data.to_dict(), repr(got))
check("get says what was created", got.data.name == "generated client" and got.data.allowed_ips == ["127.0.0.1/32"])

listed = list_api_keys.sync(client=team, status=ListApiKeysStatus.ACTIVE, limit=10)
check("list parses", isinstance(listed, PageKeyView) and any(k.id == key_id for k in listed.data), repr(listed))

changed = update_api_key.sync(key_id, client=team, body=UpdateApiKey(name="renamed", description="changed"))
check("update parses", isinstance(changed, SuccessKeyView) and changed.data.name == "renamed", repr(changed))

fresh = keyed(secret)
seen = forward_auth.sync_detailed(client=fresh, scope="templates:read")
check("the new key passes forward auth", seen.status_code == 200, str(seen.status_code))
headers = {k.lower(): v for k, v in seen.headers.items()}
check("forward auth names the principal", headers.get("x-latchkey-principal") == key_id, repr(headers))
refused = forward_auth.sync(client=fresh, scope="admin")
check("a scope it lacks is a parsed refusal", isinstance(refused, ErrorEnvelope), repr(refused))
check("the refusal's code is documented", refused.error.code.value == "forbidden", repr(refused))

usage = api_key_usage.sync(key_id, client=team)
check("usage parses", isinstance(usage, SuccessUsageReport) and usage.data.key_id == key_id, repr(usage))

looked = introspect.sync(client=service, body=IntrospectForm(token=secret))
check("introspection parses", looked is not None and looked.active, repr(looked))

rolled = roll_api_key.sync(key_id, client=team, body=RollApiKey(grace_seconds=0))
check("roll parses, a new secret", isinstance(rolled, SuccessNewKey) and rolled.data.key != secret, repr(rolled))
successor = rolled.data

leak = report_leaked_keys.sync(client=service, body=LeakReport(keys=[successor.key], url="https://example.com/paste"))
check("a leak report parses", isinstance(leak, SuccessLeakResults), repr(leak))

gone = revoke_api_key.sync(successor.id, client=team)
check("revoke answers a parsed key or refusal", isinstance(gone, (SuccessKeyView, ErrorEnvelope)), repr(gone))

missing = get_api_key.sync("key_doesnotexist000000", client=team)
check("an unknown id is a parsed 404", isinstance(missing, ErrorEnvelope) and missing.error.code.value == "not_found")

bad = create_api_key.sync(client=team, body=CreateApiKey(name="", scopes=[]))
check("bad input is a parsed 422 with fields", isinstance(bad, ErrorEnvelope) and bad.error.fields, repr(bad))

check.done()
