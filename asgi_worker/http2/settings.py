"""HTTP/2 limits: what we advertise in SETTINGS and how much of each frame kind a peer may send.

Every default below names its reason. The memory an HTTP/2 connection can make us hold is bounded by
these numbers alone: the connection receive window (request bodies not yet taken by apps), one header
block at a time (``header_list_sizes``), HPACK's dynamic table, and one frame being read.
"""

from __future__ import annotations

from dataclasses import dataclass

from asgi_worker.errors import ConfigError
from asgi_worker.http.limits import DEFAULT_LIMIT_REQUEST_HEAD, RequestLimits

__all__ = [
    "DEFAULT_CONNECTION_WINDOW",
    "DEFAULT_INITIAL_WINDOW",
    "DEFAULT_MAX_CONCURRENT_STREAMS",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_HEADER_FRAMES",
    "MAX_WINDOW",
    "Budget",
    "Http2Limits",
    "header_list_sizes",
]

# RFC 9113 6.9.1: the largest flow-control window.
MAX_WINDOW = 2**31 - 1

# Streams a client may have open at once. h2's own default and RFC 9113 6.5.2's recommended minimum;
# browsers and curl assume 100 until our SETTINGS arrive, so a lower value only causes refusals.
DEFAULT_MAX_CONCURRENT_STREAMS = 100

# SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a stream may send before the app takes them, so
# also the most body one stream can make us hold. One upload moves at most this per round trip:
# 256 KiB is 250 MB/s at 1 ms (a data centre) and 25 MB/s at 10 ms. Go's 1 MiB would let four
# stalled streams fill the connection window below, which a slow stream must not do to the others.
DEFAULT_INITIAL_WINDOW = 256 * 1024

# The connection receive window, raised from 64 KiB by one WINDOW_UPDATE at the start: the most
# unread request body one connection can make us hold (HTTP/1.1 holds 64 KiB, READ_HIGH_WATER).
# Eight times the stream window, so seven streams whose apps do not read leave room for the rest.
DEFAULT_CONNECTION_WINDOW = 2 * 1024 * 1024

# SETTINGS_MAX_FRAME_SIZE: the RFC's default and smallest value. Larger frames only let one stream
# hold the connection longer; nginx and Go keep 16 KiB too.
DEFAULT_MAX_FRAME_SIZE = 16384

# HEADERS plus CONTINUATION frames in one header block. A block is at most twice the header list
# size (``header_list_sizes``), 128 KiB by default: 8 full frames. 32 leaves room for peers that send
# smaller frames and refuses the 2024 CONTINUATION floods (endless tiny frames) after 32. h2 alone
# stops at 64 frames, which at 16 KiB each is 1 MiB held for one block.
DEFAULT_MAX_HEADER_FRAMES = 32

# SETTINGS_HEADER_TABLE_SIZE: the HPACK dynamic table the peer may fill, per connection. The RFC's
# default; what every client expects.
DEFAULT_HEADER_TABLE_SIZE = 4096


@dataclass(frozen=True)
class Budget:
    """A token bucket: ``burst`` frames at once, refilled at ``per_second``. Past it: GOAWAY."""

    burst: int
    per_second: float


# Frame budgets (CVE-2019-9512/9514/9515/9518, CVE-2023-44487). Each kind costs us a reply or a
# lookup and gives the peer nothing it needs in quantity; a well-behaved client stays far below.
# SETTINGS: one at the start, rarely another; each one needs an ACK.
DEFAULT_SETTINGS_BUDGET = Budget(16, 2.0)
# PING: keep-alives every few seconds, gRPC's bandwidth probes while we send (one token comes back
# per frame we send, so a probe per response never runs dry). Each one needs an ACK.
DEFAULT_PING_BUDGET = Budget(64, 10.0)
# DATA with no payload and no END_STREAM: no purpose but to make us work.
DEFAULT_EMPTY_DATA_BUDGET = Budget(32, 10.0)
# PRIORITY (deprecated by RFC 9113 5.3.2, still sent by some browsers, about one per stream).
DEFAULT_PRIORITY_BUDGET = Budget(200, 100.0)
# WINDOW_UPDATE: a client acknowledges our DATA with about two per frame we send (stream and
# connection); two tokens come back per DATA frame we send.
DEFAULT_WINDOW_UPDATE_BUDGET = Budget(200, 100.0)
# RST_STREAM from the peer and streams we refuse (Rapid Reset): a browser cancels at most its open
# streams at once, so twice the stream limit in a burst and the stream limit per second.
DEFAULT_RESET_BUDGET = Budget(200, 100.0)
# Frame types we do not know (ignored, RFC 9113 5.5), e.g. PRIORITY_UPDATE: about one per stream.
DEFAULT_UNKNOWN_FRAME_BUDGET = Budget(200, 100.0)


@dataclass(frozen=True)
class Http2Limits:
    """What one HTTP/2 connection advertises and tolerates (the request-head limits are
    ``RequestLimits``', shared with HTTP/1.1)."""

    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    initial_window_size: int = DEFAULT_INITIAL_WINDOW
    connection_window_size: int = DEFAULT_CONNECTION_WINDOW
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    header_table_size: int = DEFAULT_HEADER_TABLE_SIZE
    max_header_frames: int = DEFAULT_MAX_HEADER_FRAMES
    # RFC 8441 extended CONNECT (WebSockets over HTTP/2): advertised only when the server serves it.
    enable_connect_protocol: bool = False
    settings_budget: Budget = DEFAULT_SETTINGS_BUDGET
    ping_budget: Budget = DEFAULT_PING_BUDGET
    empty_data_budget: Budget = DEFAULT_EMPTY_DATA_BUDGET
    priority_budget: Budget = DEFAULT_PRIORITY_BUDGET
    window_update_budget: Budget = DEFAULT_WINDOW_UPDATE_BUDGET
    reset_budget: Budget = DEFAULT_RESET_BUDGET
    unknown_frame_budget: Budget = DEFAULT_UNKNOWN_FRAME_BUDGET

    def __post_init__(self) -> None:
        if self.max_concurrent_streams < 1:
            raise ConfigError("max_concurrent_streams must be at least 1")
        if not 0 <= self.initial_window_size <= MAX_WINDOW:
            raise ConfigError(f"initial_window_size must be 0..{MAX_WINDOW}")
        if not 65535 <= self.connection_window_size <= MAX_WINDOW:
            raise ConfigError(f"connection_window_size must be 65535..{MAX_WINDOW}")
        if not 16384 <= self.max_frame_size <= 2**24 - 1:
            raise ConfigError("max_frame_size must be 16384..16777215 (RFC 9113 6.5.2)")
        if self.max_header_frames < 1:
            raise ConfigError("max_header_frames must be at least 1")


def header_list_sizes(limits: RequestLimits) -> tuple[int, int]:
    """(advertised, tolerated) header list sizes, as RFC 9113 6.5.2 measures them.

    We advertise the HTTP/1.1 head budget as SETTINGS_MAX_HEADER_LIST_SIZE. A list up to twice that
    is still decoded and answered 431, as HTTP/1.1 answers a head over budget; past twice, HPACK
    decoding stops (an HPACK bomb) and the connection ends with ENHANCE_YOUR_CALM, since the
    compression state cannot be kept without decoding the whole block.
    """
    advertised = limits.head or DEFAULT_LIMIT_REQUEST_HEAD
    return advertised, 2 * advertised
