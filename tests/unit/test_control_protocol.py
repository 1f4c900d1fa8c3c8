"""The control listener's HTTP (``control/protocol.py``), bytes in and bytes out, no sockets.

It faces whoever can reach the control address, so besides the cases it must answer, a seeded fuzz
holds it to its contract: a request, None (head incomplete) or ``ControlRefusal`` with 400, 405 or
431, and nothing else ever escapes ``parse_request``.
"""

from __future__ import annotations

import random

import pytest

from asgi_worker.control.protocol import (
    MAX_HEAD,
    ControlRefusal,
    ControlRequest,
    answer,
    error_answer,
    parse_request,
)
from tests.fuzz.inputs import mutate

SEED = 20251205
FUZZ_INPUTS = 4000


def refusal(data: bytes) -> int:
    """The status ``parse_request`` refuses ``data`` with (fails the test if it does not refuse)."""
    with pytest.raises(ControlRefusal) as caught:
        parse_request(data)
    return caught.value.status


def test_whole_request():
    request = parse_request(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    assert request == ControlRequest("GET", "/livez", "")


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
def test_both_versions_and_no_fields(version):
    assert parse_request(b"GET /metrics " + version + b"\r\n\r\n") == ControlRequest("GET", "/metrics", "")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET",
        b"GET /livez HTTP/1.1\r\n",
        b"GET /livez HTTP/1.1\r\nHost: x\r\n",
        b"GET /livez HTTP/1.1\r\nHost: x\r\n\r",
        b"\x00\xff garbage without an end",  # judged only once the head is whole (or too long)
    ],
)
def test_partial_head_is_none(data):
    assert parse_request(data) is None


def test_head_of_exactly_max_head_is_read():
    head = b"GET /livez HTTP/1.1\r\nX: "
    data = head + b"a" * (MAX_HEAD - len(head) - 4) + b"\r\n\r\n"
    assert len(data) == MAX_HEAD
    assert parse_request(data) == ControlRequest("GET", "/livez", "")


def test_431_with_the_blank_line_past_max_head():
    head = b"GET /livez HTTP/1.1\r\nX: "
    data = head + b"a" * (MAX_HEAD - len(head) - 3) + b"\r\n\r\n"
    assert len(data) == MAX_HEAD + 1
    assert refusal(data) == 431


def test_431_without_the_blank_line():
    """A head that never ends is refused as soon as it outgrows the budget, not when it ends."""
    assert parse_request(b"G" * MAX_HEAD) is None
    assert refusal(b"G" * (MAX_HEAD + 1)) == 431
    assert refusal(b"GET /livez HTTP/1.1\r\nX: " + b"a" * MAX_HEAD) == 431


def test_431_wins_over_bad_bytes_in_a_long_head():
    assert refusal(b"\x00" * (MAX_HEAD + 10) + b"\r\n\r\n") == 431


@pytest.mark.parametrize(
    "line",
    [
        b"GET /livez",
        b"GET /livez HTTP/1.1 extra",
        b"GET  /livez HTTP/1.1",
        b"GET /livez  HTTP/1.1",
        b" GET /livez HTTP/1.1",
        b"GET /livez HTTP/2.0",
        b"GET /livez http/1.1",
        b"GET /livez HTTP/1.10",
        b"GET livez HTTP/1.1",
        b"GET * HTTP/1.1",
        b"GET http://x/livez HTTP/1.1",
        b"GET /li\x01vez HTTP/1.1",
        b"GET /li\x7fvez HTTP/1.1",
        b"G\tET /livez HTTP/1.1",
        b"GET\t/livez HTTP/1.1",
        b"",
    ],
)
def test_400_for_bad_request_lines(line):
    assert refusal(line + b"\r\nHost: x\r\n\r\n") == 400


@pytest.mark.parametrize(
    "data",
    [
        b"GET /l\xc3\xa9 HTTP/1.1\r\n\r\n",  # non-ASCII in the target
        b"GET /livez HTTP/1.1\r\nX: \xff\r\n\r\n",  # non-ASCII in a value
        b"GET /livez HTTP/1.1\r\nX: a\x00b\r\n\r\n",  # NUL in a value
        b"GET /livez HTTP/1.1\r\nX: a\nY: b\r\n\r\n",  # a bare LF inside the head
        b"GET /livez HTTP/1.1\r\nX: a\rY: b\r\n\r\n",  # a bare CR inside the head
    ],
)
def test_400_for_bad_bytes(data):
    assert refusal(data) == 400


@pytest.mark.parametrize(
    "field",
    [
        b"no colon here",
        b": no name",
        b" Leading: space",  # obs-fold, or a name starting with whitespace
        b"\tAccept: text/plain",
        b"Accept : text/plain",  # whitespace before the colon
    ],
)
def test_400_for_bare_or_bad_field_lines(field):
    assert refusal(b"GET /livez HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n") == 400


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get", b"BREW"])
def test_405_for_other_methods(method):
    assert refusal(method + b" /livez HTTP/1.1\r\nHost: x\r\n\r\n") == 405


def test_bad_field_wins_over_the_method():
    assert refusal(b"POST /livez HTTP/1.1\r\nno colon\r\n\r\n") == 400


def test_accept_is_captured_whatever_its_case_and_whitespace():
    accept = b"aCcEpT: \t application/openmetrics-text; version=1.0.0 \r\n"
    data = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + accept + b"\r\n"
    request = parse_request(data)
    assert request is not None and request.accept == "application/openmetrics-text; version=1.0.0"


def test_the_query_is_stripped():
    request = parse_request(b"GET /readyz?verbose=1&x=%20 HTTP/1.1\r\n\r\n")
    assert request == ControlRequest("GET", "/readyz", "")


def test_bytes_after_the_head_are_ignored():
    request = parse_request(b"HEAD /livez HTTP/1.1\r\n\r\nwhatever follows")
    assert request == ControlRequest("HEAD", "/livez", "")


class FakeEndpoints:
    """Answers given by the test, and the ``Accept`` values ``metrics`` was called with."""

    def __init__(self, live=(True, "alive"), ready=(True, "serving"), scrape=(b"m 1\n", "text/plain")):
        self._live, self._ready, self._scrape = live, ready, scrape
        self.accepts: list[str] = []

    def live(self):
        return self._live

    def ready(self):
        return self._ready

    def metrics(self, accept):
        self.accepts.append(accept)
        return self._scrape


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, header fields and body of one whole response."""
    head, _, body = response.partition(b"\r\n\r\n")
    line, *fields = head.decode("ascii").split("\r\n")
    version, status, _reason = line.split(" ", 2)
    assert version == "HTTP/1.1"
    return int(status), dict(field.split(": ", 1) for field in fields), body


def get(path: str, method: str = "GET", accept: str = "") -> ControlRequest:
    return ControlRequest(method, path, accept)


@pytest.mark.parametrize(
    ("path", "endpoints", "status", "body"),
    [
        ("/livez", FakeEndpoints(), 200, b"alive\n"),
        ("/livez", FakeEndpoints(live=(False, "blocked 40 s")), 503, b"blocked 40 s\n"),
        ("/readyz", FakeEndpoints(), 200, b"serving\n"),
        ("/readyz", FakeEndpoints(ready=(False, "stopping")), 503, b"stopping\n"),
        ("/metrics", FakeEndpoints(), 200, b"m 1\n"),
        ("/metrics", FakeEndpoints(scrape=None), 501, None),
        ("/", FakeEndpoints(), 404, None),
        ("/livez/", FakeEndpoints(), 404, None),
        ("/other", FakeEndpoints(), 404, None),
    ],
)
def test_answer_routes(path, endpoints, status, body):
    got_status, fields, got_body = split(answer(get(path), endpoints))
    assert got_status == status
    assert fields["connection"] == "close" and fields["cache-control"] == "no-store"
    assert int(fields["content-length"]) == len(got_body)
    if body is not None:
        assert got_body == body


def test_metrics_gets_the_accept_and_gives_the_content_type():
    endpoints = FakeEndpoints(scrape=(b"# EOF\n", "application/openmetrics-text; version=1.0.0"))
    _status, fields, body = split(answer(get("/metrics", accept="application/openmetrics-text"), endpoints))
    assert endpoints.accepts == ["application/openmetrics-text"]
    assert fields["content-type"] == "application/openmetrics-text; version=1.0.0" and body == b"# EOF\n"


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics", "/other"])
def test_head_gets_the_head_only(path):
    full = answer(get(path), FakeEndpoints())
    head_only = answer(get(path, "HEAD"), FakeEndpoints())
    assert head_only.endswith(b"\r\n\r\n") and full.startswith(head_only)
    _status, fields, body = split(head_only)
    assert body == b"" and int(fields["content-length"]) == len(full) - len(head_only)


@pytest.mark.parametrize("status", [400, 405, 408, 431, 500])
def test_error_answer_is_a_whole_closing_response(status):
    got_status, fields, body = split(error_answer(status))
    assert got_status == status and fields["connection"] == "close"
    assert int(fields["content-length"]) == len(body) > 0


SEEDS = [
    b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /metrics HTTP/1.0\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
    b"GET /readyz?x=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.30\r\n\r\n",
    b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
]
SPECIAL = [b"\r", b"\n", b"\r\n", b"\r\n\r\n", b" ", b"\t", b":", b"\x00", b"\x7f", b"\x80", b"?", b"/"]


def fuzz_input(rng: random.Random) -> bytes:
    """One input: a mutated valid request, a long or spliced one, or random bytes."""
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.randrange(0, 200))
    data = rng.choice(SEEDS)
    if roll < 0.2:  # pad a field so the head straddles MAX_HEAD
        cut = data.index(b"\r\n") + 2
        padding = b"X: " + b"a" * rng.randrange(MAX_HEAD - 200, MAX_HEAD + 200) + b"\r\n"
        data = data[:cut] + padding + data[cut:]
    elif roll < 0.4:  # special bytes where grammars break
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            data = data[:at] + rng.choice(SPECIAL) + data[at:]
    data, _steps = mutate(data, rng)
    return data


def test_fuzz_only_requests_none_or_known_refusals():
    rng = random.Random(SEED)
    outcomes = {"request": 0, "none": 0, 400: 0, 405: 0, 431: 0}
    for number in range(FUZZ_INPUTS):
        data = fuzz_input(rng)
        try:
            request = parse_request(data)
        except ControlRefusal as refused:
            assert refused.status in (400, 405, 431), f"input {number}: {refused.status} for {data[:200]!r}"
            outcomes[refused.status] += 1
        except Exception as exc:  # anything else escaping is the bug this test exists to find
            pytest.fail(f"input {number}: {exc!r} for {data[:200]!r}")
        else:
            if request is None:
                outcomes["none"] += 1
            else:
                assert request.method in ("GET", "HEAD") and request.path.startswith("/")
                assert "?" not in request.path
                outcomes["request"] += 1
    assert all(outcomes.values()), f"the fuzz missed an outcome: {outcomes}"
