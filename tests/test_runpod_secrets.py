"""RunPod account secrets, in the fake RunPod and through our client, over real HTTP.

The fake serves ``/v2/account/secrets`` as RunPod's docs describe it (checked
against ``fake_runpod_support/openapi-v2-secrets.json``, an overlay on the
copied spec, which predates secrets) and substitutes ``{{ RUNPOD_SECRET_<name> }}``
in a pod's env when its container starts: the container sees the value, the
API keeps showing the placeholder. A secret's value must never come back:
not in an answer of the fake, not in its logs, and not in a log line, an
error or a repr of our client, even when the server answering it quotes the
body it was sent.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from fake_runpod_support.openapi import CONTRACT
from test_fake_runpod import KEY, api, container_env, control, create, fake, fake_options, gql, volume_dir, wait_until  # noqa: F401  (fixtures reused)

from hpo.backends.runpod import RunPodApi, SecretExistsError, _api
from hpo.errors import ApiError, ApiUnavailableError, CloudError, RequestRejectedError
from hpo.fake_runpod import FakeRunPod
from hpo.fake_runpod._contract import SECRET_SCHEMAS
from hpo.fake_runpod._secrets import SecretStore

VALUE = "rpa_SECRET_VALUE_0123456789abcdefghij"  # what must never come back
SECRETS = "/v2/account/secrets"


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def new_secret(fake: FakeRunPod, name: str = "hpo-key", value: str = VALUE, **extra: Any) -> requests.Response:
    return api(fake, "POST", SECRETS, json={"name": name, "value": value, **extra})


@pytest.fixture
def client(fake: FakeRunPod) -> Iterator[RunPodApi]:
    api_client = RunPodApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=lambda _: None)
    yield api_client
    api_client.close()


# ---------------------------------------------------------------------- the contract


def test_the_overlay_is_merged_and_the_fake_checks_bodies_against_it() -> None:
    overlay = json.loads((Path(__file__).parent / "fake_runpod_support" / "openapi-v2-secrets.json").read_text())
    assert "docs.runpod.io" in overlay["description"]

    def strip(node: Any) -> Any:  # annotations dropped; a property named "description" kept
        if isinstance(node, dict):
            return {
                k: strip(v)
                for k, v in node.items()
                if not (k in ("description", "examples") and not isinstance(v, dict))
            }
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    schemas = overlay["components"]["schemas"]
    assert SECRET_SCHEMAS == {name: strip(schemas[name]) for name in SECRET_SCHEMAS}
    assert CONTRACT.operation("PATCH", "/v2/account/secrets/abc")[0] == "/v2/account/secrets/{id}"
    assert CONTRACT.spec["components"]["schemas"]["Secret"] == schemas["Secret"]
    assert "/v2/pods" in CONTRACT.spec["paths"]  # the spec itself is still all there


# ---------------------------------------------------------------------- the fake's routes


def test_secrets_crud_never_answers_the_value(fake: FakeRunPod) -> None:
    created = new_secret(fake, description="the controller's key")
    assert created.status_code == 201, created.text
    secret = created.json()
    assert set(secret) == {"id", "name", "createdAt", "description", "valueLastUpdatedAt"}
    assert secret["name"] == "hpo-key" and secret["description"] == "the controller's key"
    assert len(secret["id"]) == 12 and secret["id"].isalnum()
    assert secret["valueLastUpdatedAt"] == secret["createdAt"]
    assert fake.secret_names() == ["hpo-key"]

    answers = [created]
    answers.append(api(fake, "GET", SECRETS))
    assert answers[-1].json() == {"secrets": [secret]}
    answers.append(api(fake, "GET", f"{SECRETS}/{secret['id']}"))
    assert answers[-1].json() == secret

    fake.advance(60)
    answers.append(api(fake, "PATCH", f"{SECRETS}/{secret['id']}", json={"value": VALUE + "-rotated"}))
    rotated = answers[-1].json()
    assert when(rotated["valueLastUpdatedAt"]) >= when(secret["valueLastUpdatedAt"]) + timedelta(seconds=60)
    assert rotated["createdAt"] == secret["createdAt"]
    answers.append(api(fake, "PATCH", f"{SECRETS}/{secret['id']}", json={"description": "new words"}))
    assert answers[-1].json()["description"] == "new words"
    assert answers[-1].json()["valueLastUpdatedAt"] == rotated["valueLastUpdatedAt"]
    assert api(fake, "PATCH", f"{SECRETS}/{secret['id']}", json={}).status_code == 422  # at least one field

    assert all(VALUE not in answer.text for answer in answers)
    assert api(fake, "DELETE", f"{SECRETS}/{secret['id']}").status_code == 204
    assert fake.secret_names() == []
    assert api(fake, "GET", f"{SECRETS}/{secret['id']}").status_code == 404
    assert api(fake, "DELETE", f"{SECRETS}/{secret['id']}").status_code == 404
    assert api(fake, "PATCH", f"{SECRETS}/{secret['id']}", json={"value": "x"}).status_code == 404


def test_a_name_taken_is_a_409_problem(fake: FakeRunPod) -> None:
    assert new_secret(fake).status_code == 201
    again = new_secret(fake, value="another value")
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["title"] == "Conflict" and "already exists" in again.json()["detail"]
    assert new_secret(fake, name="Hpo-key").status_code == 201  # names are case-sensitive
    assert fake.secret_names() == ["Hpo-key", "hpo-key"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "RUNPOD_KEY", "value": "v"}, 400, "name"),
        ({"name": "runpodish", "value": "v"}, 400, "name"),  # the reserved prefix, in any case
        ({"name": "1abc", "value": "v"}, 422, "name"),
        ({"name": "has space", "value": "v"}, 422, "name"),
        ({"name": "", "value": "v"}, 422, "name"),
        ({"name": "a" * 192, "value": "v"}, 422, "name"),
        ({"name": "k", "value": ""}, 422, "value"),
        ({"name": "k", "value": 12345678}, 422, "value"),
        ({"name": "k"}, 422, "value"),
        ({"name": "k", "value": "é" * (8 * 1024 * 1024)}, 400, "value"),  # 16 MiB of UTF-8 in 8 Mi characters
        ({"name": "k", "value": "v", "description": "é" * 40000}, 400, "description"),  # 80,000 bytes
        ({"name": "k", "value": "v", "description": "d" * 65536}, 422, "description"),
        ({"name": "k", "value": "v", "surprise": 1}, 422, "(body)"),
    ],
)
def test_bad_secret_bodies_are_refused_naming_the_field(
    fake: FakeRunPod, body: dict[str, Any], status: int, field: str
) -> None:
    response = api(fake, "POST", SECRETS, json=body)
    assert response.status_code == status, response.text[:300]
    problem = response.json()
    lines = [problem["detail"]] if status == 400 else problem["errors"]
    assert any(line.startswith(field + ":") for line in lines), problem
    assert fake.secret_names() == []


def test_a_refused_body_is_described_without_quoting_the_value(fake: FakeRunPod) -> None:
    for body in (
        {"name": "1bad", "value": VALUE},
        {"name": "k", "value": VALUE, "surprise": True},
        {"name": "k", "value": 1234567890123},
        VALUE,
        [VALUE],
    ):
        response = api(fake, "POST", SECRETS, json=body)
        assert response.status_code == 422
        assert VALUE not in response.text and "1234567890123" not in response.text
    too_long = "s" * (16 * 1024 * 1024)  # 16 MiB of ASCII: one byte over the limit
    response = api(fake, "POST", SECRETS, json={"name": "k", "value": too_long})
    assert response.status_code == 400 and len(response.content) < 1000


def test_a_pods_key_may_not_touch_the_accounts_secrets(fake: FakeRunPod) -> None:
    secret = new_secret(fake).json()
    pod_key = fake.pod(create(fake)["id"]).api_key
    for method, path, body in [
        ("GET", SECRETS, None),
        ("POST", SECRETS, {"name": "mine", "value": "v"}),
        ("GET", f"{SECRETS}/{secret['id']}", None),
        ("PATCH", f"{SECRETS}/{secret['id']}", {"value": "stolen"}),
        ("DELETE", f"{SECRETS}/{secret['id']}", None),
    ]:
        response = api(fake, method, path, key=pod_key, json=body)
        assert response.status_code == 403, (method, path)
    assert api(fake, "GET", SECRETS, key="nope").status_code == 401
    assert fake.secret_names() == ["hpo-key"]


# ---------------------------------------------------------------------- substitution at container start


def test_the_container_sees_the_value_and_everything_else_the_placeholder(
    fake: FakeRunPod, volume_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert new_secret(fake, name="k").status_code == 201
    assert new_secret(fake, name="hf/token.v-2", value="second-value-xyz").status_code == 201
    given = {
        "OUT_DIR": "/workspace/out",
        "HPO_RUNPOD_API_KEY": "{{ RUNPOD_SECRET_k }}",
        "TIGHT": "{{RUNPOD_SECRET_k}}",
        "WIDE": "Bearer {{   RUNPOD_SECRET_hf/token.v-2 }} !",
        "UNKNOWN": "{{ RUNPOD_SECRET_nope }}",
        "NOT_ONE": "{ RUNPOD_SECRET_k }",
    }
    pod = create(fake, env=given)
    env = container_env(volume_dir, pod["id"])["env"]  # the pod command wrote what it saw onto the volume
    assert env["HPO_RUNPOD_API_KEY"] == VALUE and env["TIGHT"] == VALUE
    assert env["WIDE"] == "Bearer second-value-xyz !"
    # What RunPod does with a placeholder naming no secret is not documented: the fake leaves it as it is.
    assert env["UNKNOWN"] == "{{ RUNPOD_SECRET_nope }}" and env["NOT_ONE"] == "{ RUNPOD_SECRET_k }"

    shown = [
        api(fake, "GET", "/v2/pods"),
        api(fake, "GET", f"/v2/pods/{pod['id']}"),
        gql(fake, f'query {{ pod(input: {{podId: "{pod["id"]}"}}) {{ id env }} }}'),
        control(fake, "GET", "/_fake/pods"),
        api(fake, "GET", SECRETS),
    ]
    assert api(fake, "GET", f"/v2/pods/{pod['id']}").json()["env"] == given
    assert f"HPO_RUNPOD_API_KEY={given['HPO_RUNPOD_API_KEY']}" in shown[2].json()["data"]["pod"]["env"]
    assert fake.pod(pod["id"]).env == given
    for answer in shown:
        assert answer.status_code == 200 and VALUE not in answer.text and "second-value-xyz" not in answer.text

    # A rotated value reaches the next container start; the pod still shows the placeholder.
    secret_id = next(s["id"] for s in api(fake, "GET", SECRETS).json()["secrets"] if s["name"] == "k")
    api(fake, "PATCH", f"{SECRETS}/{secret_id}", json={"value": "rotated-value-123"})
    wait_until(lambda: fake.pod(pod["id"]).status == "RUNNING", "RUNNING")
    assert api(fake, "POST", f"/v2/pods/{pod['id']}/action", json={"action": "restart"}).status_code == 200
    assert container_env(volume_dir, pod["id"], run=1)["env"]["HPO_RUNPOD_API_KEY"] == "rotated-value-123"
    assert api(fake, "GET", f"/v2/pods/{pod['id']}").json()["env"] == given

    logged = caplog.text + fake.pod(pod["id"]).log_path.read_text(errors="replace")
    assert VALUE not in logged and "rotated-value-123" not in logged and "second-value-xyz" not in logged


def test_the_store_keeps_values_out_of_its_views() -> None:
    from hpo.fake_runpod._clock import FakeClock

    store = SecretStore(FakeClock())
    secret = store.create("k", VALUE)
    assert VALUE not in repr(secret) and VALUE not in repr(store.views()) and VALUE not in repr(store)
    assert store.substitute({"A": "{{ RUNPOD_SECRET_k }}", "B": "plain"}) == {"A": VALUE, "B": "plain"}
    store.delete(secret.id)
    assert store.substitute({"A": "{{ RUNPOD_SECRET_k }}"}) == {"A": "{{ RUNPOD_SECRET_k }}"}


# ---------------------------------------------------------------------- our client against the fake


def test_the_client_creates_lists_rotates_and_deletes_secrets(
    fake: FakeRunPod, client: RunPodApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert client.secrets() == {}
    secret_id = client.create_secret("hpo-key", VALUE, description="the controller's key")
    assert client.secrets() == {"hpo-key": secret_id}
    assert api(fake, "GET", f"{SECRETS}/{secret_id}").json()["description"] == "the controller's key"

    with pytest.raises(SecretExistsError, match="already has a secret named 'hpo-key'") as exists:
        client.create_secret("hpo-key", VALUE)
    assert isinstance(exists.value, RequestRejectedError) and exists.value.status == 409
    assert exists.value.name == "hpo-key"
    with pytest.raises(RequestRejectedError, match="name"):
        client.create_secret("RUNPOD_MINE", VALUE)

    client.update_secret(secret_id, VALUE + "-2")
    with pytest.raises(ApiError) as unknown:
        client.update_secret("nosuchsecret", VALUE)
    assert unknown.value.status == 404

    client.delete_secret(secret_id)
    client.delete_secret(secret_id)  # gone: 404 is success
    assert client.secrets() == {} and fake.secret_names() == []
    said = " ".join([caplog.text, str(exists.value), repr(exists.value), exists.value.detail, str(unknown.value)])
    assert VALUE not in said


# ---------------------------------------------------------------------- our client against a server that echoes


class EchoServer:
    """A loopback server whose secrets routes answer scripted statuses, quoting what they were sent.

    ``answers[(method, path)]`` is ``(status, body template)``: ``{body}`` in
    the template becomes the raw request body (JSON-escaped), ``{value}`` the
    value sent, ``{start}`` its first 12 characters. ``GET /v2/account/secrets``
    answers ``listing``.
    """

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, str]] = {}
        self.listing: list[dict[str, Any]] = []
        self.posts = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                path = self.path.split("?", 1)[0]
                if self.command == "POST":
                    server.posts += 1
                if (self.command, path) == ("GET", SECRETS):
                    status, text = 200, json.dumps({"secrets": server.listing})
                else:
                    status, template = server.answers.get((self.command, path), (404, '{"detail": "nope"}'))
                    value = json.loads(raw).get("value", "") if raw else ""
                    text = (
                        template.replace("{body}", json.dumps(raw)[1:-1])
                        .replace("{value}", json.dumps(value)[1:-1])
                        .replace("{start}", json.dumps(value[:12])[1:-1])
                    )
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def echo_client(echo: EchoServer) -> Iterator[RunPodApi]:
    api_client = RunPodApi("k", rest_url=echo.url, attempts=2, sleep=lambda _: None, deadline=10.0)
    yield api_client
    api_client.close()


ECHOES = {
    "detail quotes the value": (400, '{"title": "Bad Request", "status": 400, "detail": "value \\"{value}\\" is bad"}'),
    "errors quote the body": (422, '{"title": "x", "status": 422, "detail": "invalid", "errors": ["$: {body}"]}'),
    "detail quotes the start": (400, '{"detail": "value {start}... refused"}'),
    "a 409 quotes the value": (409, '{"detail": "conflict on {value}"}'),
    "a plain-text echo": (400, "{body}"),
    "a 500 quotes the body": (500, '{"detail": "upstream said {body}"}'),
    "a 201 that is not JSON": (201, "<html>{value}</html>"),
}


@pytest.mark.parametrize("value", [VALUE, "short", 'quo"te\\and\nnewline-0123456789'], ids=["long", "short", "escaped"])
@pytest.mark.parametrize("case", list(ECHOES))
def test_no_error_of_the_client_quotes_the_value_it_sent(
    echo: EchoServer, echo_client: RunPodApi, caplog: pytest.LogCaptureFixture, case: str, value: str
) -> None:
    caplog.set_level(logging.DEBUG)
    echo.answers[("POST", SECRETS)] = ECHOES[case]
    echo.answers[("PATCH", f"{SECRETS}/s1")] = ECHOES[case]
    raised: list[CloudError] = []
    for call in (lambda: echo_client.create_secret("k", value), lambda: echo_client.update_secret("s1", value)):
        with pytest.raises(CloudError) as caught:
            call()
        raised.append(caught.value)
    texts = [caplog.text]
    for error in raised:
        texts += [str(error), repr(error), error.detail, str(error.__cause__), str(error.__context__)]
    escaped = json.dumps(value)[1:-1]
    for text in texts:
        assert value not in text and escaped not in text and value[:12] not in text, text
    if case == "a 409 quotes the value":
        assert isinstance(raised[0], SecretExistsError)
    if case.startswith("detail quotes") or case == "errors quote the body":
        assert isinstance(raised[0], RequestRejectedError) and "withheld" in str(raised[0])


def test_a_detail_that_does_not_quote_the_value_is_kept(echo: EchoServer, echo_client: RunPodApi) -> None:
    echo.answers[("POST", SECRETS)] = (400, '{"detail": "name: names beginning with RUNPOD are reserved"}')
    with pytest.raises(RequestRejectedError, match="names beginning with RUNPOD are reserved"):
        echo_client.create_secret("RUNPODX", VALUE)


def test_a_create_answered_500_that_made_the_secret_is_found_by_name(
    echo: EchoServer, echo_client: RunPodApi
) -> None:
    echo.answers[("POST", SECRETS)] = (500, '{"detail": "Something went wrong."}')
    echo.listing = [{"id": "s9", "name": "k", "createdAt": "2026-09-17T12:00:00Z"}]
    assert echo_client.create_secret("k", VALUE) == "s9"
    assert echo.posts == 1  # never posted twice once the lookup found it

    echo.listing = []
    echo.posts = 0
    with pytest.raises(ApiUnavailableError, match="kept failing"):
        echo_client.create_secret("k", VALUE)
    assert echo.posts == 2  # posted again only after a lookup showed no such secret (2 attempts)


def test_a_junk_listing_row_is_skipped_with_a_warning(
    echo: EchoServer, echo_client: RunPodApi, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_api, "_WARNED", set())
    echo.listing = [{"id": "s1", "name": "a"}, {"id": 5, "name": "b"}, "c", {"name": "d"}]
    with caplog.at_level(logging.WARNING):
        assert echo_client.secrets() == {"a": "s1"}
    assert sum("skipping entry" in record.getMessage() for record in caplog.records) == 3
