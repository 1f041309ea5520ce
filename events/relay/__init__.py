"""The relay: tails the event store in commit order and publishes ordered batches to RabbitMQ.

Commands never publish (no dual write); the relay is the only path from store to broker. It
saves its checkpoint after each confirmed publish, so a crash repeats at most one batch, which
consumers skip by checkpoint. One relay leads at a time (a PostgreSQL advisory lock held on a
dedicated connection); the others are standbys that try for the lock twice a second and take over
once the leader's session ends.
"""

from events.relay.publisher import BatchPublisher, RabbitBatchPublisher
from events.relay.tail import Relay

__all__ = ["BatchPublisher", "RabbitBatchPublisher", "Relay"]
