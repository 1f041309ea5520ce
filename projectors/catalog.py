"""Every read model cloudnet serves, at the version the live projectors build."""

from __future__ import annotations

from projectors.networks import NetworksProjection
from projectors.projection import Projection


def live_projections() -> list[Projection]:
    return [NetworksProjection(version=1)]
