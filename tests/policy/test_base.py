"""When a reply has reached its stop string: the one rule every engine asks (``hits_stop``)."""

from __future__ import annotations

from nat_ray.policy.base import STOP_WINDOW, hits_stop, trim_at_stop
from nat_ray.react import STOP

STOPS = tuple(STOP)  # ("\nObservation:",)


def test_a_stop_string_inside_the_reply_stops_it() -> None:
    assert hits_stop("Action: calculate[2+2]\nObservation:", 12, STOPS)
    assert not hits_stop("Action: calculate[2+2]\nObserv", 11, STOPS)


def test_a_reply_that_opens_with_the_rest_of_a_stop_string_stops_as_generate_does() -> None:
    # the prompt ends in a newline: generate() matches "\nObservation:" across it
    assert hits_stop("Observation:", 3, STOPS)
    assert trim_at_stop("\n" + "Observation: made up", STOPS) == ""


def test_past_the_window_the_tail_is_not_the_reply_start() -> None:
    # a tail decoded from the last STOP_WINDOW tokens of a longer reply does not follow the prompt
    assert not hits_stop("Observation: the rest", STOP_WINDOW + 1, STOPS)
    assert hits_stop("Observation: the rest", STOP_WINDOW, STOPS)
