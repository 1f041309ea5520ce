"""Every read model cloudnet serves, by name, as a factory of its versions (replay builds the
next version of a read model with the same code the live projector runs)."""

from __future__ import annotations

from collections.abc import Callable

from projectors.instances import InstancesProjection
from projectors.networks import NetworksProjection
from projectors.projection import Projection
from projectors.provisioner.boots import PendingBoots
from projectors.subnets import SubnetsProjection

READ_MODELS: dict[str, Callable[[int], Projection]] = {
    "networks": NetworksProjection,
    "subnets": SubnetsProjection,
    "instances": InstancesProjection,
}

#: The projector feeds every read model above from this one group (queue `<exchange>.projections`).
READ_MODELS_GROUP = "projections"


def process_manager_state() -> list[Projection]:
    """State the process managers keep like projections (tables + checkpoint, no view)."""
    return [PendingBoots(version=1)]
