"""The `compose` fixture: the containerised mesh (compose.yaml + infra/compose/local-images.yaml)
on podman, in a compose project of its own with its own volumes and free host ports, so it runs
beside `make compose-up`'s and `make up`'s meshes. It is built (from cache when nothing changed),
started in order with readiness polled, and removed with its volumes afterwards.

These tests need podman, which `make compose-test` installs; without it they fail, they do not
skip (issue: "never a silent skip")."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import httpx
import pytest

from infra.compose.podman import ComposeError, ComposeMesh, build_images, require_tools


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def compose() -> Iterator[ComposeMesh]:
    try:
        require_tools()
    except ComposeError as error:
        pytest.fail(f"the containerised mesh cannot run here: {error}")
    mesh = ComposeMesh(
        project=f"cloudnet-test-{os.getpid()}",
        gateway_port=free_port(),
        prometheus_port=free_port(),
    )
    build_images()
    try:
        mesh.up(timeout=300)
        yield mesh
    finally:
        mesh.down(volumes=True)


@pytest.fixture
def gateway(compose: ComposeMesh) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {compose.token()}"}
    with httpx.Client(base_url=compose.gateway, headers=headers, timeout=30) as client:
        yield client
