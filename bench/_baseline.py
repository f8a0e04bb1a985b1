"""The no-orchestration baseline: the night's agency requests in plain asyncio + httpx.

Run by ``bench/nightly.py`` in its own process: ``python bench/_baseline.py JOB.json``.
``JOB.json`` holds the subjects (the same referrals the pipeline traces, as the pipeline
builds them), each agency's base URL and the concurrency cap. It makes exactly the requests
the five connectors make on a first night (same URLs, same minimised JSON bodies), at most
``concurrency`` in flight per agency, reads and decodes every answer, honours 429 +
Retry-After, and writes nothing. It prints one JSON line: wall time and requests per agency.

Client set-up (docs/architecture.md, "Measured facts"): one ``httpx.AsyncClient`` per
agency, its pool the size of the cap, fed by ``concurrency`` workers from a queue, on
``httpx-aiohttp``'s transport (``--transport aiohttp``, the default): the fastest plain
client measured here (issue 17). ``--transport httpx`` uses httpx's own transport.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

#: The 11 district/borough councils the housing connector asks (connectors.builtin.housing).
COUNCILS = ("basingstoke-deane", "east-hampshire", "eastleigh", "fareham", "gosport", "hart",
            "havant", "new-forest", "rushmoor", "test-valley", "winchester")


def _pick(subject: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: subject[n] for n in names if subject.get(n) is not None}


def requests_for(subjects: list[dict[str, Any]], urls: dict[str, Any]
                 ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Per agency, the (URL, JSON body) of every request of a first night, in order."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {a: [] for a in urls}
    for s in subjects:
        if "other_la" in urls:
            body = _pick(s, "forename", "surname", "dob", "upn")
            for base in urls["other_la"].values():
                out["other_la"].append((f"{base.rstrip('/')}/cme/v1/enquiries", body))
        if "housing" in urls:
            body = _pick(s, "surname", "parent_surname", "postcode", "address_line")
            for slug in COUNCILS:
                out["housing"].append((f"{urls['housing'].rstrip('/')}/{slug}/v1/searches",
                                       body))
        if "lpd" in urls:
            body = {"upn": s["upn"]} if s.get("upn") else _pick(s, "forename", "surname", "dob")
            out["lpd"].append((f"{urls['lpd'].rstrip('/')}/s2s/v1/lost-pupils/search", body))
        if "dwp" in urls:
            out["dwp"].append((f"{urls['dwp'].rstrip('/')}/v1/requests",
                               _pick(s, "forename", "surname", "dob", "postcode")))
        if "border_force" in urls:
            out["border_force"].append((f"{urls['border_force'].rstrip('/')}/v1/requests",
                                        _pick(s, "forename", "surname", "dob", "sex")))
    return out


def _client(cap: int, transport_kind: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    transport: httpx.AsyncBaseTransport | None = None
    if transport_kind == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        # the pool size goes on the transport: a client does not pass it on to one it is given
        transport = AiohttpTransport(limits=limits)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10.0, connect=5.0),
                             transport=transport)


async def _agency(name: str, work: list[tuple[str, dict[str, Any]]], cap: int,
                  transport_kind: str, stats: Counter[str]) -> float:
    started = time.perf_counter()
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    async with _client(cap, transport_kind) as client:

        async def worker() -> None:
            while True:
                try:
                    url, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                for _attempt in range(8):
                    try:
                        resp = await client.post(url, json=body)
                    except (httpx.TransportError, TimeoutError):
                        stats[f"{name}:connection_error"] += 1
                        continue
                    if resp.status_code == 429:
                        stats[f"{name}:429"] += 1
                        await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
                        continue
                    if resp.headers.get("content-type", "").startswith("application/json"):
                        resp.json()
                    else:
                        _ = resp.content
                    stats[f"{name}:{resp.status_code}"] += 1
                    break

        await asyncio.gather(*(worker() for _ in range(cap)))
    return time.perf_counter() - started


async def run(job: dict[str, Any], transport_kind: str) -> dict[str, Any]:
    work = requests_for(job["subjects"], job["urls"])
    cap = int(job["concurrency"])
    stats: Counter[str] = Counter()
    started = time.perf_counter()
    per_agency = await asyncio.gather(
        *(_agency(name, items, cap, transport_kind, stats) for name, items in work.items())
    )
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "agency_wall_s": dict(zip(work, per_agency, strict=True)),
        "requests": {name: len(items) for name, items in work.items()},
        "responses": dict(stats),
        "transport": transport_kind,
        "cpu_s": time.process_time(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", type=Path)
    ap.add_argument("--transport", choices=("aiohttp", "httpx"), default="aiohttp")
    args = ap.parse_args(argv)
    job = json.loads(args.job.read_text(encoding="utf-8"))
    result = asyncio.run(run(job, args.transport))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
