"""The runtime's set-up told apart from the workload: the kernel's changes replayed in the order
of the syscall stream (fluxtui/detection/runtime_setup.py)."""

from __future__ import annotations

from fluxtui.collectors.container_trace import SetupChange
from fluxtui.detection.runtime_setup import RuntimeSetup
from fluxtui.events import ProcessKey

SHIM = ProcessKey(100, 1)
RUNC = ProcessKey(101, 2)
INIT = ProcessKey(102, 3)


def change(kind: str, key: ProcessKey, parent: int = 0) -> SetupChange:
    return SetupChange(kind, key.pid, key.start_ticks, 1, parent)


def test_runc_from_exec_to_the_entrypoint() -> None:
    """runc execs (verified), forks its init, which re-execs itself from a memfd, sets up and
    execs the entrypoint: in set-up until that exec event, not after."""
    setup = RuntimeSetup()
    for c in (change("begin", RUNC), change("fork", INIT, RUNC.pid), change("keep", INIT),
              change("end", INIT)):
        setup.kernel(c, inside_container=False)
    setup.on_exec(RUNC, anonymous=False)  # the exec of runc itself
    assert setup.active(RUNC)
    assert setup.active(INIT)  # forked: in set-up before any exec of its own
    setup.on_exec(INIT, anonymous=True)  # runc's memfd copy of itself
    assert setup.active(INIT)
    setup.on_exec(INIT, anonymous=False)  # the entrypoint, into the container's root
    assert not setup.active(INIT)
    assert setup.active(RUNC)
    assert INIT in setup.new_tick()  # its set-up calls this tick are left out of its risk
    assert RUNC in setup.new_tick()  # still in set-up: carried over to the next tick
    assert INIT not in setup.new_tick()
    setup.exited(RUNC)
    assert not setup.active(RUNC)


def test_an_exec_the_kernel_said_nothing_about_is_the_workload() -> None:
    setup = RuntimeSetup()
    setup.on_exec(INIT, anonymous=True)  # a memfd exec by anyone else: not a runtime
    assert not setup.active(INIT)
    setup.kernel(change("fork", INIT, RUNC.pid), inside_container=False)
    setup.on_exec(INIT, anonymous=False)  # the end event was lost: an exec ends the set-up
    assert not setup.active(INIT)


def test_a_runtime_exec_from_inside_a_container_is_not_exempt() -> None:
    """An escaped workload (or a host path mounted into its container) execs the real runc:
    neither it, nor what it forks, nor its memfd copy is exempt."""
    setup = RuntimeSetup()
    setup.kernel(change("begin", RUNC), inside_container=True)
    setup.kernel(change("keep", RUNC), inside_container=True)
    setup.kernel(change("fork", INIT, RUNC.pid), inside_container=True)
    setup.on_exec(RUNC, anonymous=False)
    setup.on_exec(RUNC, anonymous=True)
    assert not setup.active(RUNC) and not setup.active(INIT)
    assert setup.refused == 1


def test_a_set_up_that_spans_ticks_is_covered_in_the_tick_it_ends() -> None:
    setup = RuntimeSetup()
    setup.kernel(change("fork", INIT, RUNC.pid), inside_container=False)
    assert INIT in setup.new_tick()
    setup.on_exec(INIT, anonymous=False)  # the entrypoint, one tick later
    assert INIT in setup.new_tick()
    setup.kernel(change("fork", SHIM, RUNC.pid), inside_container=False)
    setup.new_tick()
    setup.exited(SHIM)  # exits in set-up the next tick
    assert SHIM in setup.new_tick()


def test_daemons_found_at_start_and_their_forks() -> None:
    setup = RuntimeSetup()
    setup.seed(SHIM)
    setup.kernel(change("fork", RUNC, SHIM.pid), inside_container=False)
    assert setup.active(SHIM) and setup.active(RUNC)
