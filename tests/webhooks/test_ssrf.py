"""SSRF: targets refused at Submit (address literals, schemes, malformed
URLs) or at delivery (names that resolve to refused addresses, checked on
the address actually connected to), with no traffic to them."""

from __future__ import annotations

import grpc
import pytest

from lrod.domain.webhooks import AddressRules, url_violations
from tests.helpers import error_info, violated_fields
from tests.webhooks.support import Delivery, FixedResolver, hooked, shorter

REFUSED_AT_SUBMIT = [
    "https://127.0.0.1/hook",
    "https://10.0.0.1/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",
    "http://hooks.example.com/plain-http",
    "ftp://hooks.example.com/",
    "/relative/path",
    "https://user:secret@hooks.example.com/",
    "https://" + "a" * 2048 + ".example.com/",
    "",
]


@pytest.mark.parametrize("url", REFUSED_AT_SUBMIT)
def test_refused_targets_by_the_default_rules(url: str) -> None:
    assert url_violations(url, AddressRules())


def test_allowed_targets() -> None:
    assert url_violations("https://hooks.example.com:8443/a?b=c", AddressRules()) == []
    allow_local = AddressRules.parse(["127.0.0.1"], allow_http=True)
    assert url_violations("http://127.0.0.1:9/x", allow_local) == []
    assert url_violations("http://10.0.0.1/x", allow_local)
    networks = AddressRules.parse(["10.0.0.0/8", "::1", "hooks.internal"])
    assert networks.address_allowed("10.2.3.4")
    assert networks.address_allowed("::1")
    assert networks.address_allowed("192.168.0.1", host="hooks.internal")
    assert not networks.address_allowed("192.168.0.1", host="other.internal")
    with pytest.raises(ValueError, match="not a host name"):
        AddressRules.parse(["bad host!"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_submit_refuses_them_with_a_field_violation(database_url) -> None:
    async with hooked(database_url, shorter(schemes="https", allow=None)) as h:
        for url in REFUSED_AT_SUBMIT:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await h.submit(url)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, url
            assert error_info(caught.value).reason == "INVALID_NOTIFICATION_URL"
            assert violated_fields(caught.value) == ["notification.url"]
        listed = await h.service.store.deliveries(None, 10)
    assert listed == []


async def test_names_resolving_to_refused_addresses_fail_before_connecting(
    database_url, receiver
) -> None:
    resolver = FixedResolver({"rebound.test": "10.0.0.1", "metadata.test": "169.254.169.254"})
    # No allow-list: the receiver's own 127.0.0.1 is refused too.
    settings = shorter(allow=None, schedule="0.1")
    async with hooked(database_url, settings, resolver=resolver) as h:
        urls = [
            "http://rebound.test/hook",
            "http://metadata.test/latest/",
            f"http://localhost:{receiver.port}/ok",
        ]
        ops = [await h.submit(url) for url in urls]  # names pass at Submit
        ends = [await h.ended(op.name) for op in ops]
        refused = h.service.metrics.registry.get_sample_value(
            "lrod_webhook_attempts_total", {"outcome": "refused"}
        )
    for end in ends:
        assert end.state == Delivery.STATE_FAILED
        assert (end.attempts, end.last_error, end.last_http_status) == (
            1,
            "ADDRESS_NOT_ALLOWED",
            0,
        )
    assert refused == 3
    assert receiver.received == []  # localhost was never connected to
