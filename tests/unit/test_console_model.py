"""The console's pure parts: the pickers' filter terms (parsed by the same
parser as ListOperations), overview rates, progress and ETA, payload JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lrod.console import model
from lrod.console.views import build_filter
from lrod.domain.errors import Code, InvalidArgument
from lrod.domain.filters import Field, parse_filter
from lrod.domain.operation import Operation, Payload, Progress, PublicError
from lrod.domain.states import State
from lrod.store.protocol import JobTypeOverview

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_pickers_become_aip160_terms_the_list_parser_reads() -> None:
    text = build_filter("done = true", "FAILED", 'odd "type"', "team=finance, env=prod")
    assert text == (
        'done = true AND metadata.state = FAILED AND metadata.job_type = "odd \\"type\\"" '
        'AND labels.team = "finance" AND labels.env = "prod"'
    )
    conditions = parse_filter(text).conditions
    assert [c.field for c in conditions] == [
        Field.DONE,
        Field.STATE,
        Field.JOB_TYPE,
        Field.LABEL,
        Field.LABEL,
    ]
    assert conditions[2].value == 'odd "type"'
    assert build_filter("", "", "", "") == ""


@pytest.mark.parametrize(
    ("state", "labels"), [("NOPE", ""), ("", "team"), ("", "Team=x"), ("", "<b>=1")]
)
def test_bad_picker_values_are_refused(state: str, labels: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        build_filter("", state, "", labels)
    assert refused.value.reason == "INVALID_FILTER"


def test_overview_rates() -> None:
    counts = [
        JobTypeOverview(
            "a",
            queued=2,
            succeeded=6,
            failed=2,
            cancelled=2,
            oldest_due=NOW - timedelta(seconds=90),
        ),
        JobTypeOverview("b", running=1),
    ]
    a, b = model.overview_rows(counts, 5, NOW)
    assert (a.per_minute, a.failure_rate, a.oldest_queued_age) == (2.0, 0.25, timedelta(seconds=90))
    assert (b.per_minute, b.failure_rate, b.oldest_queued_age) == (0.0, None, None)
    total = model.totals(counts)
    assert (total.queued, total.running, total.finished, total.oldest_due) == (
        2,
        1,
        10,
        NOW - timedelta(seconds=90),
    )


def _op(**fields: object) -> Operation:
    base: dict[str, object] = {
        "id": "x",
        "owner": "o",
        "job_type": "t",
        "state": State.RUNNING,
        "input": Payload("type.googleapis.com/google.protobuf.StringValue", b"\n\x02hi"),
        "create_time": NOW,
        "update_time": NOW + timedelta(seconds=10),
        "run_after": NOW,
        "start_time": NOW,
        "progress": Progress(2, 10, "copying"),
    }
    return Operation(**(base | fields))  # type: ignore[arg-type]


def test_progress_and_eta_at_the_rate_so_far() -> None:
    op = _op()
    assert model.percent(op) == 20
    assert model.eta(op) == timedelta(seconds=40)
    assert model.short_duration(model.eta(op)) == "40s"
    assert model.eta(_op(progress=Progress(0, 10))) is None
    assert model.eta(_op(state=State.QUEUED)) is None
    assert model.percent(_op(progress=Progress(3, 0))) is None
    assert model.percent(_op(state=State.SUCCEEDED, progress=Progress())) == 100
    assert model.short_duration(timedelta(hours=26)) == "1d02h"


def test_payloads_and_errors_as_json() -> None:
    op = _op()
    assert json.loads(model.payload_json(op.input)) == {
        "@type": "type.googleapis.com/google.protobuf.StringValue",
        "value": "hi",
    }
    unknown = json.loads(model.payload_json(Payload("type.googleapis.com/no.Such", b"abc")))
    assert unknown == {"@type": "type.googleapis.com/no.Such", "bytes": 3, "note": "unknown type"}
    error = PublicError(Code.FAILED_PRECONDITION, "<b>no</b>", "REFUSED")
    assert json.loads(model.error_json(error))["code"] == "FAILED_PRECONDITION"
    live = model.live(_op(state=State.FAILED, error=error))
    assert (live["done"], live["percent"], json.loads(live["error"])["message"]) == (
        True,
        20,
        "<b>no</b>",
    )
