"""The numbers behind ``/metrics`` (``metrics/counts.py``): buckets, labels, byte totals, snapshots and
their sums, and the families they become (``metrics/families.py``). Pure: no server, no clock, no
``prometheus_client``."""

from __future__ import annotations

import json

import pytest

from asgi_worker.metrics.counts import (
    DURATION_BUCKETS,
    RequestHistogram,
    ServerCounts,
    Totals,
    snapshot,
)
from asgi_worker.metrics.families import server_families

SLOTS = len(DURATION_BUCKETS) + 1  # the buckets and +Inf


class Finished:
    """A finished request as ``RequestHistogram.record`` reads it (what an ``HttpCycle`` carries)."""

    def __init__(self, method: str, status: int, scheme: str, version: str, received: int, sent: int) -> None:
        self.scope = {"method": method, "scheme": scheme, "http_version": version}
        self.status = status
        self.start_time = 0.0
        self.body_received = received
        self.bytes_sent = sent


def record(histogram, method, status, scheme, version, seconds, received, sent):
    """One request of ``seconds`` (its head at 0.0, its end at ``seconds``)."""
    histogram.record(Finished(method, status, scheme, version, received, sent), seconds)


def bucket_of(seconds: float) -> float | str:
    """The ``le`` bound of the bucket one request of ``seconds`` lands in ("+Inf" past the last)."""
    histogram = RequestHistogram()
    record(histogram, "GET", 200, "http", "1.1", seconds, 0, 0)
    (row,) = histogram.series.values()
    assert len(row) == 1 + SLOTS and sum(row[1:]) == 1 and row[0] == seconds
    slot = next(i for i, n in enumerate(row[1:]) if n)
    return "+Inf" if slot == len(DURATION_BUCKETS) else DURATION_BUCKETS[slot]


@pytest.mark.parametrize(
    ("seconds", "le"),
    [
        (0.0, 0.0),
        (1e-9, 0.005),
        (0.005, 0.005),  # on a bound: in that bound's bucket (Prometheus' "less or equal")
        (0.0050001, 0.01),
        (0.3, 0.5),
        (10.0, 10.0),
        (10.000001, "+Inf"),
        (11.0, "+Inf"),
        (3600.0, "+Inf"),
    ],
)
def test_bucket_edges(seconds, le):
    assert bucket_of(seconds) == le


def test_buckets_are_opentelemetrys_and_sorted():
    assert DURATION_BUCKETS[0] == 0.0 and DURATION_BUCKETS[-1] == 10.0
    assert list(DURATION_BUCKETS) == sorted(set(DURATION_BUCKETS))


@pytest.mark.parametrize("method", ["BREW", "get", "PROPFIND", "", "GET " * 100])
def test_unknown_method_is_other(method):
    histogram = RequestHistogram()
    record(histogram, method, 200, "http", "1.1", 0.01, 0, 0)
    assert list(histogram.series) == [("_OTHER", 200, "http", "1.1")]


def test_known_methods_keep_their_name_and_label_sets_stay_apart():
    histogram = RequestHistogram()
    for method in ("GET", "POST", "PATCH", "GET"):
        record(histogram, method, 200, "https", "1.1", 0.01, 0, 0)
    record(histogram, "GET", 404, "https", "1.1", 0.01, 0, 0)
    record(histogram, "GET", 0, "http", "1.0", 0.01, 0, 0)  # no response was sent
    counts = {key: int(sum(row[1:])) for key, row in histogram.series.items()}
    assert counts == {
        ("GET", 200, "https", "1.1"): 2,
        ("POST", 200, "https", "1.1"): 1,
        ("PATCH", 200, "https", "1.1"): 1,
        ("GET", 404, "https", "1.1"): 1,
        ("GET", 0, "http", "1.0"): 1,
    }


def test_byte_totals_and_finished_count():
    histogram = RequestHistogram()
    record(histogram, "POST", 201, "http", "1.1", 0.02, 1000, 17)
    record(histogram, "GET", 200, "http", "1.1", 0.5, 0, 4096)
    record(histogram, "BREW", 418, "http", "1.1", 0.1, 3, 0)
    assert (histogram.finished, histogram.request_bytes, histogram.response_bytes) == (3, 1003, 4113)
    assert sum(row[0] for row in histogram.series.values()) == pytest.approx(0.62)


def sample_snapshot(requests: int = 3, open_connections: int = 2) -> dict:
    """A snapshot with something in every part: requests, counters, labelled counters, gauges."""
    counts = ServerCounts()
    counts.accepted, counts.refused, counts.ws_total, counts.ws_open = 5, 1, 2, 1
    counts.refused_malformed(400)
    counts.refused_malformed(400)
    counts.refused_malformed(431)
    counts.timeouts["keep_alive"] += 3
    counts.refused_http2("too_many_streams", 2)
    counts.refused_http2("ping_flood", 1)
    histogram = RequestHistogram()
    for _ in range(requests):
        record(histogram, "GET", 200, "http", "1.1", 0.003, 10, 20)
    record(histogram, "BREW", 418, "http", "1.0", 20.0, 0, 0)
    return snapshot(counts, histogram, open_connections, 1)


def test_snapshot_is_json_and_survives_a_round_trip():
    snap = sample_snapshot()
    again = json.loads(json.dumps(snap, allow_nan=False))
    assert again == snap
    totals = Totals()
    totals.add(again)
    assert totals.request_count == 4
    assert totals.labelled["malformed"] == {"400": 2, "431": 1}
    assert totals.labelled["timeouts"] == {"request_head": 0, "request_body": 0, "keep_alive": 3}
    assert totals.labelled["http2_refusals"] == {"too_many_streams": 2, "ping_flood": 1}
    assert totals.series[("GET", 200, "http", "1.1")][0] == pytest.approx(0.009)
    assert totals.series[("_OTHER", 418, "http", "1.0")][-1] == 1  # 20 s: +Inf
    assert totals.values["request_bytes"] == 30 and totals.values["response_bytes"] == 60


def test_snapshot_without_histogram_has_no_requests():
    snap = snapshot(ServerCounts(), None, 0, 0)
    assert json.loads(json.dumps(snap)) == snap
    assert snap["requests"] == [] and snap["request_bytes"] == 0 and snap["response_bytes"] == 0
    assert snap["http2_refusals"] == {}  # nothing until a first HTTP/2 refusal


def test_http2_refusals_add_up_by_kind():
    counts = ServerCounts()
    assert counts.http2_refusals == {}
    counts.refused_http2("rapid_reset", 1)
    counts.refused_http2("too_many_streams", 3)
    counts.refused_http2("rapid_reset", 2)
    assert counts.http2_refusals == {"rapid_reset": 3, "too_many_streams": 3}
    snap = snapshot(counts, None, 0, 0)
    counts.refused_http2("rapid_reset", 1)  # the snapshot is a copy
    assert snap["http2_refusals"] == {"rapid_reset": 3, "too_many_streams": 3}


def test_totals_add_sums_counters_and_gauges():
    totals = Totals()
    totals.add(sample_snapshot(requests=3, open_connections=2))
    totals.add(sample_snapshot(requests=1, open_connections=5))
    assert totals.request_count == 3 + 1 + 2  # and one BREW in each
    assert totals.series[("GET", 200, "http", "1.1")][1 + DURATION_BUCKETS.index(0.005)] == 4
    assert totals.values["accepted"] == 10 and totals.values["refused"] == 2
    assert totals.values["open_connections"] == 7 and totals.values["ws_open"] == 2
    assert totals.values["active_requests"] == 2
    assert totals.labelled["malformed"] == {"400": 4, "431": 2}
    assert totals.labelled["http2_refusals"] == {"too_many_streams": 4, "ping_flood": 2}


def test_totals_add_without_gauges_keeps_counters_only():
    """A worker that is gone: its counters still count, its gauges are 0 now."""
    totals = Totals()
    totals.add(sample_snapshot(open_connections=9), gauges=False)
    assert totals.values["open_connections"] == 0 and totals.values["ws_open"] == 0
    assert totals.values["active_requests"] == 0
    assert totals.values["accepted"] == 5 and totals.values["ws_total"] == 2
    assert totals.request_count == 4 and totals.labelled["malformed"]["400"] == 2
    assert totals.labelled["http2_refusals"] == {"too_many_streams": 2, "ping_flood": 1}


def test_a_workers_counts_stay_in_the_totals_once_it_is_gone():
    """The supervisor's scrape: the gone workers' totals plus each living worker's latest snapshot.
    A worker leaving moves its last snapshot from the second to the first: no counter changes."""
    first, second = sample_snapshot(), sample_snapshot(requests=1)

    def scrape(gone: Totals, living: list[dict]) -> Totals:
        totals = gone.copy()
        for snap in living:
            totals.add(snap)
        return totals

    gone = Totals()
    before = scrape(gone, [first, second])
    gone.add(first, gauges=False)
    after = scrape(gone, [second])
    assert after.labelled == before.labelled
    assert after.labelled["http2_refusals"] == {"too_many_streams": 4, "ping_flood": 2}
    assert after.labelled["timeouts"]["keep_alive"] == 6
    assert after.request_count == before.request_count
    assert after.values["accepted"] == before.values["accepted"]
    assert after.values["open_connections"] == 2  # the gone worker's gauge left with it


def test_totals_copy_is_independent():
    original = Totals()
    original.add(sample_snapshot())
    before = (original.request_count, dict(original.values), original.labelled["malformed"]["400"])
    copied = original.copy()
    copied.add(sample_snapshot())
    copied.series[("GET", 200, "http", "1.1")][0] += 100.0
    copied.labelled["timeouts"]["keep_alive"] += 100
    copied.labelled["http2_refusals"]["ping_flood"] += 100
    assert (original.request_count, dict(original.values), original.labelled["malformed"]["400"]) == before
    assert original.series[("GET", 200, "http", "1.1")][0] == pytest.approx(0.009)
    assert original.labelled["timeouts"]["keep_alive"] == 3
    assert original.labelled["http2_refusals"]["ping_flood"] == 1
    assert copied.request_count == 2 * original.request_count


GOOD_ROW = ["GET", 200, "http", "1.1", 0.1, *[0] * (SLOTS - 1), 1]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"requests": "GET"}, id="requests-a-string"),
        pytest.param({"requests": [{"method": "GET"}]}, id="request-a-dict"),
        pytest.param({"requests": [GOOD_ROW[:-1]]}, id="request-short"),
        pytest.param({"requests": [[*GOOD_ROW, 1]]}, id="request-long"),
        pytest.param({"requests": None}, id="requests-null"),
        pytest.param({"requests": 5}, id="requests-a-number"),
        pytest.param({"requests": [["GET", "x", "http", "1.1", *GOOD_ROW[4:]]]}, id="status-not-a-number"),
        pytest.param({"requests": [[*GOOD_ROW[:5], *[None] * SLOTS]]}, id="bucket-counts-null"),
        pytest.param({"requests": [[*GOOD_ROW[:5], *["1"] * SLOTS]]}, id="bucket-counts-strings"),
        pytest.param({"accepted": "5", "refused": None, "ws_total": [1]}, id="counters-not-numbers"),
        pytest.param({"malformed": [400, 1], "timeouts": "keep_alive"}, id="labelled-not-dicts"),
        pytest.param({"malformed": {"400": "1", "431": None}}, id="labelled-counts-not-numbers"),
        pytest.param({"http2_refusals": ["ping_flood", 1]}, id="http2-refusals-not-a-dict"),
        pytest.param({"http2_refusals": {"ping_flood": "1", "rapid_reset": True}}, id="http2-refusals-bad"),
        pytest.param({"open_connections": {}, "ws_open": "1"}, id="gauges-not-numbers"),
    ],
)
def test_totals_skip_malformed_snapshot_parts(bad):
    """A worker's JSON is untrusted in shape: a bad part is skipped, the good totals are untouched."""
    totals = Totals()
    totals.add(sample_snapshot())
    expected = totals.copy()
    totals.add(bad)
    assert totals.series == expected.series
    assert totals.values == expected.values
    assert totals.labelled == expected.labelled


def family(totals: Totals, name: str):
    (found,) = [f for f in server_families(totals) if f.name == name]
    return found


def test_http2_refusals_family_sorted_by_kind_and_present_when_empty():
    empty = family(Totals(), "asgi_server_http2_refusals")
    assert (empty.kind, empty.labels, empty.samples) == ("counter", ("kind",), [])
    assert empty.doc.startswith("HTTP/2 streams and connections refused, by kind: floods")
    totals = Totals()
    totals.add(sample_snapshot())
    totals.add({"http2_refusals": {"settings_flood": 1, "ping_flood": 4}})
    refusals = family(totals, "asgi_server_http2_refusals")
    assert refusals.samples == [
        (("ping_flood",), 5),
        (("settings_flood",), 1),
        (("too_many_streams",), 2),
    ]
