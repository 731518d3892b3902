"""The real MLflow 3 client's webhook API against a running model-ledger (tests/webhooks_client/run.sh).

The first half checks what MLflow's own `tests/tracking/test_client_webhooks.py` checks (create,
get, list with pages, update, delete, MLflow's error messages), written for model-ledger. The
second half runs a receiver on 127.0.0.1 that verifies every delivery it gets with the
`standardwebhooks` library (the Standard Webhooks headers) and with MLflow's own construction
(the X-MLflow-* headers), and refuses anything that does not verify.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import standardwebhooks
from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent, WebhookStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

MV_CREATED = WebhookEvent(WebhookEntity.MODEL_VERSION, WebhookAction.CREATED)
RM_CREATED = WebhookEvent(WebhookEntity.REGISTERED_MODEL, WebhookAction.CREATED)
SECRET = "receiver-secret-" + uuid.uuid4().hex


@pytest.fixture
def client():
    c = MlflowClient()
    yield c
    # Each test starts from no webhooks.
    for w in c.list_webhooks(max_results=1000):
        c.delete_webhook(w.webhook_id)


class Receiver:
    """Collects deliveries; answers 500 to the first `fail_first`, then 200 to verified ones."""

    def __init__(self, secret, fail_first=0):
        self.secret = secret
        self.fail_first = fail_first
        self.verified = []
        self.rejected = []
        self.seen = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = receiver.handle(dict(self.headers.items()), body)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, headers, body):
        lower = {k.lower(): v for k, v in headers.items()}
        whsec = "whsec_" + base64.b64encode(self.secret.encode()).decode()
        try:
            standardwebhooks.Webhook(whsec).verify(body, lower)
            signed = f"{lower['x-mlflow-delivery-id']}.{lower['x-mlflow-timestamp']}.".encode() + body
            expected = base64.b64encode(
                hmac.new(self.secret.encode(), signed, hashlib.sha256).digest()
            ).decode()
            assert f"v1,{expected}" in lower["x-mlflow-signature"].split(" ")
        except Exception as e:  # a delivery that does not verify is refused and remembered
            with self.lock:
                self.rejected.append((lower, body, repr(e)))
            return 401
        with self.lock:
            self.seen += 1
            if self.seen <= self.fail_first:
                return 500
            self.verified.append((lower, json.loads(body)))
        return 200

    def wait_for(self, n, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.verified) >= n:
                    return list(self.verified)
            time.sleep(0.1)
        raise AssertionError(f"expected {n} verified deliveries, got {self.verified} / {self.rejected}")

    def close(self):
        self.server.shutdown()


def test_create_get_and_secret_never_returned(client):
    webhook = client.create_webhook(name="test_webhook", url="https://example.com/webhook", events=[MV_CREATED])
    assert webhook.name == "test_webhook"
    assert webhook.url == "https://example.com/webhook"
    assert webhook.secret is None
    assert webhook.events == [MV_CREATED]
    assert webhook.status == WebhookStatus.ACTIVE
    got = client.get_webhook(webhook.webhook_id)
    assert (got.webhook_id, got.name, got.events) == (webhook.webhook_id, "test_webhook", [MV_CREATED])

    with_secret = client.create_webhook(
        name="test_webhook_with_secret", url="https://example.com/s", events=[MV_CREATED], secret="my_secret"
    )
    assert with_secret.secret is None
    raw = requests.get(
        f"{os.environ['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/webhooks/{with_secret.webhook_id}",
        headers={"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"},
    )
    assert raw.status_code == 200 and "my_secret" not in raw.text and "secret" not in raw.json()["webhook"]

    multiple = client.create_webhook(
        name="multi", url="https://example.com/m",
        events=[WebhookEvent(WebhookEntity.MODEL_VERSION_ALIAS, WebhookAction.CREATED), MV_CREATED],
    )
    assert sorted(multiple.events, key=lambda e: (e.entity.value, e.action.value)) == [
        MV_CREATED, WebhookEvent(WebhookEntity.MODEL_VERSION_ALIAS, WebhookAction.CREATED)
    ]


def test_not_found_messages(client):
    for call in (
        lambda: client.get_webhook("nonexistent"),
        lambda: client.update_webhook(webhook_id="nonexistent", name="new_name"),
        lambda: client.delete_webhook("nonexistent"),
    ):
        with pytest.raises(MlflowException, match="Webhook with ID nonexistent not found"):
            call()


def test_list_pages(client):
    for i in range(5):
        client.create_webhook(name=f"webhook{i}", url=f"https://example.com/{i}", events=[MV_CREATED])
    first = client.list_webhooks(max_results=2)
    assert len(first) == 2 and first.token
    second = client.list_webhooks(max_results=2, page_token=first.token)
    assert len(second) == 2 and second.token
    third = client.list_webhooks(max_results=2, page_token=second.token)
    assert len(third) == 1 and not third.token
    ids = [w.webhook_id for page in (first, second, third) for w in page]
    assert len(set(ids)) == 5


def test_update_full_and_partial(client):
    webhook = client.create_webhook(
        name="original_name", url="https://example.com/original", events=[MV_CREATED], description="Original"
    )
    partial = client.update_webhook(webhook_id=webhook.webhook_id, name="updated_name")
    assert (partial.name, partial.url, partial.events, partial.description) == (
        "updated_name", "https://example.com/original", [MV_CREATED], "Original"
    )
    updated = client.update_webhook(
        webhook_id=webhook.webhook_id, name="updated_name2", url="https://example.com/updated",
        events=[MV_CREATED, RM_CREATED], description="Updated description", secret="new_secret",
        status=WebhookStatus.DISABLED,
    )
    assert updated.events == [MV_CREATED, RM_CREATED]
    assert updated.status == WebhookStatus.DISABLED
    assert updated.description == "Updated description"
    assert updated.last_updated_timestamp > webhook.last_updated_timestamp


@pytest.mark.parametrize(
    ("invalid_url", "expected"),
    [
        ("   ", r"Webhook URL cannot be empty or just whitespace"),
        ("ftp://example.com", r"Invalid webhook URL scheme"),
        ("http://[invalid", r"Invalid webhook URL"),
    ],
)
def test_invalid_urls(client, invalid_url, expected):
    webhook = client.create_webhook(name="test_webhook", url="https://example.com/webhook", events=[MV_CREATED])
    with pytest.raises(MlflowException, match=expected):
        client.update_webhook(webhook_id=webhook.webhook_id, url=invalid_url)


def test_delete(client):
    webhook = client.create_webhook(name="test_webhook", url="https://example.com/webhook", events=[MV_CREATED])
    client.delete_webhook(webhook.webhook_id)
    with pytest.raises(MlflowException, match=r"Webhook with ID .* not found"):
        client.get_webhook(webhook.webhook_id)
    assert webhook.webhook_id not in {w.webhook_id for w in client.list_webhooks()}


def test_registry_rest_store_speaks_the_same_api():
    """MLflow's RestStore (what MlflowClient wraps, and what MLflow's
    test_rest_store_webhooks.py drives directly) against model-ledger: the full round trip."""
    from mlflow.store.model_registry.rest_store import RestStore
    from mlflow.utils.rest_utils import MlflowHostCreds

    creds = MlflowHostCreds(os.environ["MLFLOW_TRACKING_URI"], token=os.environ["MLFLOW_TRACKING_TOKEN"])
    store = RestStore(lambda: creds)
    made = store.create_webhook(name="via-store", url="https://example.com/store", events=[MV_CREATED],
                                secret="kept-private", description="first")
    assert (made.name, made.secret, made.events, made.description) == ("via-store", None, [MV_CREATED], "first")
    assert store.get_webhook(made.webhook_id).url == "https://example.com/store"
    changed = store.update_webhook(webhook_id=made.webhook_id, events=[MV_CREATED, RM_CREATED],
                                   status=WebhookStatus.DISABLED)
    assert (changed.name, changed.events, changed.status) == ("via-store", [MV_CREATED, RM_CREATED],
                                                              WebhookStatus.DISABLED)
    assert made.webhook_id in {w.webhook_id for w in store.list_webhooks(max_results=100)}
    with pytest.raises(MlflowException, match="Invalid webhook URL scheme"):
        store.update_webhook(webhook_id=made.webhook_id, url="ftp://example.com")
    store.delete_webhook(made.webhook_id)
    with pytest.raises(MlflowException, match=f"Webhook with ID {made.webhook_id} not found"):
        store.get_webhook(made.webhook_id)
    with pytest.raises(MlflowException, match="Webhook with ID nonexistent not found"):
        store.delete_webhook("nonexistent")


def test_readers_are_refused(client):
    reader = MlflowClient()
    os.environ["MLFLOW_TRACKING_TOKEN"], admin = os.environ["MODEL_LEDGER_READER_TOKEN"], os.environ["MLFLOW_TRACKING_TOKEN"]
    try:
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|only admins"):
            reader.list_webhooks()
    finally:
        os.environ["MLFLOW_TRACKING_TOKEN"] = admin


def test_deliveries_verify_with_standardwebhooks(client):
    receiver = Receiver(SECRET)
    try:
        client.create_webhook(name="verified", url=receiver.url, events=[RM_CREATED, MV_CREATED], secret=SECRET)
        name = "wh-model-" + uuid.uuid4().hex[:8]
        client.create_registered_model(name)
        client.create_model_version(name, source="s3://bucket/model", run_id=None)
        got = receiver.wait_for(2)
        assert not receiver.rejected
        assert [(b["entity"], b["action"]) for _, b in got] == [
            ("registered_model", "created"), ("model_version", "created")
        ]
        assert got[1][1]["data"]["name"] == name and got[1][1]["data"]["version"] == "1"
        assert set(got[0][1]) == {"entity", "action", "timestamp", "data"}
    finally:
        receiver.close()


def test_test_webhook_and_retries(client):
    receiver = Receiver(SECRET, fail_first=1)
    try:
        webhook = client.create_webhook(name="tested", url=receiver.url, events=[MV_CREATED], secret=SECRET)
        # The first answer is a 500: test_webhook reports it as the receiver's failure.
        result = client.test_webhook(webhook.webhook_id)
        assert result.success is False and result.response_status == 500
        result = client.test_webhook(webhook.webhook_id, event=MV_CREATED)
        assert result.success is True and result.response_status == 200 and result.response_body == "ok"
        # A real delivery after a 500 is retried under the same delivery id.
        receiver.fail_first = receiver.seen + 1
        name = "wh-retry-" + uuid.uuid4().hex[:8]
        client.create_registered_model(name)
        client.create_model_version(name, source="s3://bucket/model", run_id=None)
        got = receiver.wait_for(2)
        assert got[-1][1]["data"]["name"] == name
        assert not receiver.rejected
    finally:
        receiver.close()


def test_signed_checkpoints_reach_a_subscribed_receiver_after_their_events(client):
    """`ledger.checkpoint.created` is model-ledger's own event: subscribed over REST (the MLflow
    client has no enum for it), signed like every delivery, sent after the events it vouches for,
    and the MLflow client still lists the webhook (its `events` show MLflow's events only)."""
    receiver = Receiver(SECRET)
    try:
        created = requests.post(
            f"{os.environ['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/webhooks",
            headers={"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"},
            json={"name": "checkpoints", "url": receiver.url, "secret": SECRET,
                  "events": ["model_version.created", "ledger.checkpoint.created"]},
        )
        assert created.status_code == 200, created.text
        webhook_id = created.json()["webhook"]["webhook_id"]
        listed = {w.webhook_id: w for w in client.list_webhooks(max_results=100)}
        assert listed[webhook_id].events == [MV_CREATED]
        assert client.get_webhook(webhook_id).events == [MV_CREATED]

        name = "wh-ckpt-" + uuid.uuid4().hex[:8]
        client.create_registered_model(name)
        client.create_model_version(name, source="s3://bucket/model", run_id=None)
        signed = subprocess.run(
            [os.environ["MODEL_LEDGER_BIN"], "audit", "checkpoint",
             "--database-url", os.environ["MODEL_LEDGER_DATABASE_URL"],
             "--data-dir", os.environ["MODEL_LEDGER_DATA_DIR"]],
            capture_output=True, text=True, check=True,
        )
        got = receiver.wait_for(2)
        assert not receiver.rejected
        assert [(b["entity"], b["action"]) for _, b in got] == [
            ("model_version", "created"), ("ledger.checkpoint", "created")
        ]
        data = got[1][1]["data"]
        assert data["note"] == signed.stdout
        assert data["origin"] and data["key_id"] and len(data["hash"]) == 64
        assert data["position"] >= 1 and data["created_at"] == got[1][1]["timestamp"]
    finally:
        receiver.close()
