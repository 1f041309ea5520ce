"""Every read model cloudnet serves, at the version the live projectors build."""

from __future__ import annotations

from projectors.instances import InstancesProjection
from projectors.networks import NetworksProjection
from projectors.projection import Projection
from projectors.subnets import SubnetsProjection


def live_projections() -> list[Projection]:
    return [
        NetworksProjection(version=1),
        SubnetsProjection(version=1),
        InstancesProjection(version=1),
    ]
