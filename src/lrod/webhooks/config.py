"""The webhook settings turned into what the dispatcher and Submit use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from standardwebhooks import Webhook

from lrod.domain.webhooks import AddressRules, Schedule, url_violations
from lrod.jobs.registry import Registry
from lrod.settings import WebhookSettings


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def signers(text: str | None) -> tuple[Webhook, ...]:
    """One signer per secret (`whsec_` + base64, as Standard Webhooks gives
    them). ValueError if one is malformed."""
    result = []
    for secret in _split(text):
        try:
            result.append(Webhook(secret))
        except Exception as error:  # binascii.Error, EmptyWebhookSecretError
            raise ValueError("a webhook secret must be whsec_ followed by base64") from error
    return tuple(result)


def check_setting(kind: str, value: Any) -> None:
    if kind == "secrets":
        signers(value)
    elif kind == "allow":
        AddressRules.parse(_split(value))
    elif kind == "schemes":
        if not _split(value) or not set(_split(value)) <= {"http", "https"}:
            raise ValueError("expected https, or https,http")
    elif kind == "schedule":
        try:
            Schedule.parse(value)
        except ValueError:
            raise ValueError("expected comma-separated seconds, e.g. 5,300,1800") from None


@dataclass(frozen=True)
class WebhookConfig:
    rules: AddressRules
    schedule: Schedule
    signers: tuple[Webhook, ...]
    settings: WebhookSettings

    @classmethod
    def of(cls, settings: WebhookSettings) -> WebhookConfig:
        return cls(
            AddressRules.parse(_split(settings.allow), "http" in _split(settings.schemes)),
            Schedule.parse(settings.schedule),
            signers(settings.secrets),
            settings,
        )

    def check_defaults(self, registry: Registry) -> None:
        """A job type's default target obeys the same rules as a Submit's
        (ValueError at start-up otherwise)."""
        for job_type in registry:
            url = job_type.default_notify_url
            problems = url_violations(url, self.rules) if url is not None else []
            if problems:
                raise ValueError(f"default_notify_url of {job_type.name}: {problems[0]}")
