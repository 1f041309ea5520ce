"""How long the relay gathers the next batch after publishing one (`linger_after`)."""

import pytest

from events.relay.tail import (
    LINGER_FROM,
    LINGER_PER_EVENT,
    STEADY_LINGER,
    STEADY_WITHIN,
    linger_after,
)


@pytest.mark.parametrize("published", [1, LINGER_FROM - 1])
def test_a_light_stream_is_published_at_once(published: int) -> None:
    assert linger_after(published, ceiling=0.02) == 0.0


def test_the_pause_grows_with_the_batch_just_published() -> None:
    small, larger = linger_after(LINGER_FROM, 0.02), linger_after(2 * LINGER_FROM, 0.02)
    assert small == pytest.approx(LINGER_FROM * LINGER_PER_EVENT)
    assert larger == pytest.approx(2 * small)


def test_the_pause_never_exceeds_the_ceiling() -> None:
    assert linger_after(500, ceiling=0.02) == 0.02
    assert linger_after(500, ceiling=0.0) == 0.0  # a ceiling of 0 turns lingering off


def test_a_small_batch_in_a_steady_stream_lingers() -> None:
    assert linger_after(1, ceiling=0.02, since_last=0.005) == STEADY_LINGER
    assert linger_after(1, ceiling=0.02, since_last=STEADY_WITHIN * 0.99) == STEADY_LINGER
    assert linger_after(1, ceiling=0.0, since_last=0.005) == 0.0  # lingering off


def test_a_small_batch_after_a_pause_is_published_at_once() -> None:
    assert linger_after(1, ceiling=0.02, since_last=STEADY_WITHIN) == 0.0
    assert linger_after(LINGER_FROM - 1, ceiling=0.02, since_last=1.0) == 0.0
