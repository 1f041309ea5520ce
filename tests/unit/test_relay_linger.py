"""How long the relay gathers the next batch after publishing one (`linger_after`)."""

import pytest

from events.relay.tail import LINGER_FROM, LINGER_PER_EVENT, linger_after


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
