"""The HTTP client of a Consul agent, addressed the way Consul's own tools read
`CONSUL_HTTP_ADDR`: `host:port` or a URL. See https://developer.hashicorp.com/consul/commands#environment-variables
"""

from __future__ import annotations

import httpx

#: Seconds for any agent call that is not a blocking query (those add their own wait).
AGENT_TIMEOUT_SECONDS = 5.0


def agent_url(address: str) -> str:
    """`consul:8500` → `http://consul:8500`; a URL stays as it is."""
    return address if "://" in address else f"http://{address}"


def agent_client(address: str) -> httpx.AsyncClient:
    # trust_env=False: the agent is local to the mesh; a proxy from the environment never applies.
    return httpx.AsyncClient(
        base_url=agent_url(address),
        timeout=httpx.Timeout(AGENT_TIMEOUT_SECONDS, connect=2.0),
        trust_env=False,
    )
