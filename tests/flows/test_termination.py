"""SIGTERM ends a build even when the exception its handler raises is swallowed: raised inside a garbage-collection
callback, Prefect's TerminationSignal is only printed ("Exception ignored"), so the flow checks between stages."""

from __future__ import annotations

import gc
import signal
import weakref

import pytest

from datafactory.flows.build import termination_remembered


class Terminated(Exception):
    """Stands for Prefect's TerminationSignal."""


def raise_terminated(signum, frame):
    raise Terminated(signum)


@pytest.fixture
def prefect_like_handler():
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    yield
    signal.signal(signal.SIGTERM, previous)


class Doomed:
    pass


def test_a_sigterm_swallowed_in_a_gc_callback_ends_the_build_at_the_next_check(prefect_like_handler):
    with termination_remembered() as stop_if_terminated:
        stop_if_terminated()  # nothing arrived: a no-op
        doomed = Doomed()
        handler = signal.getsignal(signal.SIGTERM)
        swallowed = weakref.ref(doomed, lambda _: handler(signal.SIGTERM, None))  # noqa: F841 - keeps the callback
        del doomed
        gc.collect()  # the callback's exception is printed and dropped, as in the builds that ran on to the end
        with pytest.raises(Terminated):
            stop_if_terminated()
    assert signal.getsignal(signal.SIGTERM) is raise_terminated  # the handler before the build is back
