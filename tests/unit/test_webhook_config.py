"""A webhook's configuration is refused, with a message naming the problem, when it could not
be delivered or verified; and the signature is the one docs/webhooks.md documents."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

import pydantic
import pytest

from hub import settings
from hub.audit import webhook_signing
from hub.cli import main as cli

SECRET = "0123456789abcdef-secret"


def configure(**webhook: Any) -> settings.Settings:
    return settings.Settings(services=[{"name": "hooked", **webhook}])


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        (
            {"webhook_url": "https://h.example/hook", "webhook_events": ["server."]},
            "service 'hooked': a webhook_url needs a webhook_secret of at least 16 characters",
        ),
        (
            {"webhook_url": "https://h.example/hook", "webhook_events": ["server."],
             "webhook_secret": "short"},
            "needs a webhook_secret of at least 16 characters",
        ),
        (
            {"webhook_url": "ftp://h.example/hook", "webhook_events": ["server."],
             "webhook_secret": SECRET},
            "webhook_url must be an http:// or https:// URL with a host, got 'ftp://h.example/hook'",
        ),
        (
            {"webhook_url": "http:///hook", "webhook_events": ["server."],
             "webhook_secret": SECRET},
            "webhook_url must be an http:// or https:// URL with a host",
        ),
        (
            {"webhook_url": "https://h.example/hook", "webhook_secret": SECRET},
            'webhook_events is empty (use ["*"] for every event)',
        ),
        (
            {"webhook_url": "https://h.example/hook", "webhook_events": ["server.", ""],
             "webhook_secret": SECRET},
            "webhook_events: '' is not an event type or its prefix",
        ),
        (
            {"webhook_url": "https://h.example/hook", "webhook_events": ["Server.*"],
             "webhook_secret": SECRET},
            "webhook_events: 'Server.*' is not an event type or its prefix",
        ),
        (
            {"webhook_events": ["server."], "webhook_secret": SECRET},
            "service 'hooked': webhook_events/webhook_secret need a webhook_url",
        ),
        (
            {"webhook_url": "https://h.example/hook", "webhook_events": ["server."],
             "webhook_secret": SECRET, "webhook_timeout_s": 0},
            "webhook_timeout_s",
        ),
    ],
)  # fmt: skip
def test_an_incomplete_or_bad_webhook_is_refused_naming_the_problem(
    webhook: dict[str, Any], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        configure(**webhook)
    assert message in str(caught.value)


def test_a_complete_webhook_is_accepted() -> None:
    config = configure(
        webhook_url="http://127.0.0.1:9/hook",
        webhook_events=["server.", "project.pushed", "*"],
        webhook_secret=SECRET,
    )
    assert config.services[0].webhook_timeout_s == 10.0
    assert SECRET not in repr(config)  # a SecretStr


def test_serve_refuses_to_start_with_a_webhook_without_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CHRONOHUB_"):
            monkeypatch.delenv(name)
    toml = tmp_path / "chronohub.toml"
    toml.write_text(
        '[[services]]\nname = "hooked"\nwebhook_url = "https://h.example/hook"\n'
        'webhook_events = ["server."]\n'
    )
    monkeypatch.setenv("CHRONOHUB_CONFIG", str(toml))
    assert cli.main(["serve"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "a webhook_url needs a webhook_secret" in err


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"1:2"}'
    want = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signing.signature(SECRET, 1700000000, body) == f"sha256={want}"
    headers = webhook_signing.headers(SECRET, 1700000000, body, "server.ready", "1:2")
    assert headers["X-Chronohub-Event"] == "server.ready"
    assert headers["X-Chronohub-Delivery"] == "1:2"
    assert webhook_signing.verify(SECRET, headers, body, now=1700000100)
    assert not webhook_signing.verify(SECRET, headers, body + b" ", now=1700000100)
    assert not webhook_signing.verify("another-secret-0123456", headers, body, now=1700000100)
    # too old: a captured delivery replayed later
    assert not webhook_signing.verify(SECRET, headers, body, now=1700000000 + 301)
