"""Running a pipeline's concurrent parts: each ends only by its error or by being cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def until_first_ends(*parts: Coroutine[Any, Any, Any]) -> None:
    """Run ``parts`` as tasks until the first of them ends; cancel the others and wait for them.

    Raises:
        Exception: the error the first to end raised (a store that failed, a refused handshake...).
    """
    tasks = [asyncio.create_task(part) for part in parts]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
