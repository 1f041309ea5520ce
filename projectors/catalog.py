"""Every read model cloudnet serves, at the version the live projectors build."""

from __future__ import annotations

from projectors.instances import InstancesProjection
from projectors.networks import NetworksProjection
from projectors.projection import Projection
from projectors.provisioner.boots import PendingBoots
from projectors.subnets import SubnetsProjection


def process_manager_state() -> list[Projection]:
    """State the process managers keep like projections (tables + checkpoint, no view)."""
    return [PendingBoots(version=1)]


def live_projections() -> list[Projection]:
    return [
        NetworksProjection(version=1),
        SubnetsProjection(version=1),
        InstancesProjection(version=1),
    ]
