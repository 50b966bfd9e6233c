"""Latency of `system_list_module_versions` over MCP (the official Python SDK, streamable
HTTP, one session) next to the same question over REST (`GET /api/v1/modules/{name}/versions`,
one keep-alive connection), against bench/mcp.sh's receiver. Prints medians and p90s."""

import asyncio
import statistics
import sys
import time

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL, N = sys.argv[1], int(sys.argv[2])
AUTH = {"Authorization": "Bearer bench-read-token-0123"}


def summary(name, ms):
    ms.sort()
    print(f"{name}: median {statistics.median(ms):.2f} ms, p90 {ms[int(len(ms) * 0.9)]:.2f} ms (n={len(ms)})")


async def main():
    http = httpx2.AsyncClient(headers=AUTH, timeout=30)
    async with Client(streamable_http_client(f"{URL}/mcp", http_client=http)) as c:
        for _ in range(20):
            await c.call_tool("system_list_module_versions", {"module_name": "my-redis"})
        mcp = []
        for _ in range(N):
            t = time.perf_counter()
            r = await c.call_tool("system_list_module_versions", {"module_name": "my-redis"})
            mcp.append((time.perf_counter() - t) * 1000)
            assert not r.is_error and r.structured_content["versions"], r
    async with httpx2.AsyncClient(headers=AUTH, timeout=30) as h:
        for _ in range(20):
            await h.get(f"{URL}/api/v1/modules/my-redis/versions")
        rest = []
        for _ in range(N):
            t = time.perf_counter()
            r = await h.get(f"{URL}/api/v1/modules/my-redis/versions")
            rest.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200 and r.json()["versions"], r.text
    summary("MCP  system_list_module_versions", mcp)
    summary("REST GET /modules/my-redis/versions", rest)


asyncio.run(main())
