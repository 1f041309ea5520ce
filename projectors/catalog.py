"""Every read model cloudnet serves, by name, as a factory of its versions (replay builds the
next version of a read model with the same code the live projector runs), and what the projector
process applies: those read models and the provisioner's pending boots."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from projectors.instances import InstancesProjection
from projectors.networks import NetworksProjection
from projectors.projection import Projection
from projectors.provisioner.boots import PendingBoots
from projectors.runtime import LiveProjection, ProjectionRunner
from projectors.subnets import SubnetsProjection

if TYPE_CHECKING:
    from events import EventStore

READ_MODELS: dict[str, Callable[[int], Projection]] = {
    "networks": NetworksProjection,
    "subnets": SubnetsProjection,
    "instances": InstancesProjection,
}

#: The projector feeds every read model above from this one group (queue `<exchange>.projections`).
READ_MODELS_GROUP = "projections"

#: The queues groups had before: one per read model, and the provisioner's before its pending
#: boots joined the projector's group. The projector deletes them at its start: in a mesh upgraded
#: in place nothing would consume them any more, and they would fill forever.
RETIRED_GROUPS = (*READ_MODELS, PendingBoots.name)


def projector_runners(store: EventStore, boot_delay_seconds: float) -> list[ProjectionRunner]:
    """What the projector applies, together: the live version of every read model, and the
    provisioner's pending boots (its to-do list, a projection with no view). A consumer of their
    own for the boots cost about 1 ms of CPU per batch, though only instances' events change them
    (docs/BENCHMARKS.md, thirteenth session)."""
    runners: list[ProjectionRunner] = [
        LiveProjection(store, factory) for factory in READ_MODELS.values()
    ]
    runners.append(ProjectionRunner(store, PendingBoots(boot_delay_seconds)))
    return runners


def process_manager_state() -> list[Projection]:
    """State the process managers keep like projections (tables + checkpoint, no view)."""
    return [PendingBoots(version=1)]
