"""``vai worker`` processes for a bench, started as a user starts them and ready to claim before it measures."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def vai_workers(env: Mapping[str, str], count: int, concurrency: int) -> AsyncIterator[list[int]]:
    """``count`` ``vai worker --concurrency N`` processes with ``env``, each past "worker ready": their pids.
    Terminated (SIGTERM, so they drain) and waited for on the way out."""
    processes = []
    try:
        for _ in range(count):
            processes.append(
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-c", "from virtuousai.cli.main import app; app()", "worker"),
                    *("--concurrency", str(concurrency)),
                    cwd=REPO_ROOT,
                    env=dict(env),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            if not line.startswith(b"worker ready"):
                raise RuntimeError(f"bench: a worker did not start: {line!r}")
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await process.wait()
