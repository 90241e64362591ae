"""Types of the native RTP receiver (`_recv.c`)."""

# (offset in samples, int16 PCM in native byte order, arrival of its first packet)
Block = tuple[int, bytearray, float]
Partial = tuple[bytes, int, float]  # raw G.711 of the unfinished block, its offset, its start
# (blocks, packets, octets, samples, next seq, next ts, last arrival, extended highest seq,
#  jitter, last ts, partial)
State = tuple[list[Block], int, int, int, int, int, float, int, float, int | None, Partial | None]
Queued = tuple[int, bytes, tuple[str, int], float]  # (session id, datagram, source, arrival)

def now() -> float: ...

class Receiver:
    overflow: int
    oversize: int
    taken: int
    wakeups: int
    def __init__(self, ulaw: bytes, alaw: bytes, block: int, flush_after: float) -> None: ...
    def fileno(self) -> int: ...
    def add(self, fd: int) -> int: ...
    def remove(self, sid: int) -> State: ...
    def arm(
        self,
        sid: int,
        host: str,
        port: int,
        pt: int,
        alaw: bool,
        ssrc: int,
        seq: int,
        ts: int,
        position: int,
        max_ext: int,
        jitter: float,
        last_ts: int | None,
        last_arrival: float,
        pending: bytes,
        pending_offset: int,
        pending_since: float,
    ) -> bool: ...
    def sync(self, sid: int, disarm: bool) -> State: ...
    def poll(self) -> tuple[list[Queued], list[int]]: ...
    def close(self) -> None: ...
