"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending GETs
back to back for a fixed time and timing each full response.

It speaks just enough HTTP (GET, Content-Length or chunked bodies) to be cheap: a general
client such as httpx spends about a millisecond of CPU per request, which on a 2-core
machine shared with the server would be measured as server latency.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Load:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    body_bytes: dict[str, int] = field(default_factory=dict)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, b"".join(chunks)
            chunks.append(chunk[:-2])
    raise ValueError("response without a length")


async def _user(host: str, port: int, paths: list[str], start: int, deadline: float, load: Load) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    n = start
    try:
        while time.monotonic() < deadline:
            path = paths[n % len(paths)]
            n += 1
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode())
            status, body = await _read_response(reader)
            load.latencies[path].append(time.perf_counter() - started)
            load.body_bytes[path] = len(body)
            if status != 200:
                load.errors.append(f"{path}: HTTP {status}")
    finally:
        writer.close()


async def _run(host: str, port: int, paths: list[str], seconds: float, connections: int) -> Load:
    load = Load(latencies={p: [] for p in paths})
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_user(host, port, paths, i, deadline, load) for i in range(connections)))
    return load


def run_load(host: str, port: int, paths: list[str], seconds: float, connections: int) -> Load:
    """`connections` clients, each cycling through `paths` for `seconds`."""
    return asyncio.run(_run(host, port, paths, seconds, connections))
