"""Serve the fault sandbox: ``python faultserver.py WORLD_JSON PORT`` (127.0.0.1 only).

The sandbox app behind ``faultkit.Tap``; started and stopped by ``faultkit.serve``.
"""

from __future__ import annotations

import sys

import uvicorn
from faultkit import build_app


def main() -> None:
    world, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(build_app(world), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, lifespan="off", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
