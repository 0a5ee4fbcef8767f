"""The isolated calculator: a hard per-call timeout that holds in threads and inside a Ray actor."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from nat_ray.tools.calculator import Calculator, worker_env

SLOW = "(x+y+1)**1000 - (x+y-1)**1000"  # small, allowed, and over 60 s to simplify on 2 cores
# A timed-out call returns after the 1 s timeout plus the slack below: a loaded CI machine has taken 3.1 s. It stays
# far below what the expressions take with no timeout (SLOW over 60 s, 9**9**9**9 without end), so a timeout that
# did not hold still fails these tests.
SLACK_S = 9.0


@pytest.fixture
def calc():
    with Calculator(timeout_s=1.0) as c:
        yield c


def test_ordinary_expressions(calc: Calculator) -> None:
    assert calc("1/3 * 2") == "2/3"
    assert calc("2 * pi") == "6.28319"
    assert calc("x + 1") == "x + 1"
    assert calc(123) == "Error: expression must be a string"  # type: ignore[arg-type]


def test_timeout_kills_the_worker_and_the_next_call_works(calc: Calculator) -> None:
    assert calc("1 + 1") == "2"  # worker started
    t0 = time.monotonic()
    obs = calc(SLOW)
    elapsed = time.monotonic() - t0
    assert obs == "Error: calculation timed out after 1s"
    assert elapsed < 1.0 + SLACK_S
    assert calc.kills == 1
    assert calc("6 * 2/3") == "4"


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('touch /tmp/nat_ray_pwned_calc')",
        "9**9**9**9",
        "factorial(10**7)",
        "(" * 300 + "1" + ")" * 300,
        "9" * 100_000,
        "(1).__class__.__mro__",
    ],
)
def test_hostile_input_answered_within_the_timeout(calc: Calculator, expression: str) -> None:
    t0 = time.monotonic()
    obs = calc(expression)
    assert obs.startswith("Error: ")
    assert time.monotonic() - t0 < 1.0 + SLACK_S
    assert not Path("/tmp/nat_ray_pwned_calc").exists()


def test_concurrent_callers_get_their_own_answers(calc: Calculator) -> None:
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = calc(f"{i} * 3")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: str(3 * i) for i in range(16)}


def test_a_crashed_worker_is_replaced(calc: Calculator) -> None:
    assert calc("2 + 2") == "4"
    assert calc._proc is not None
    calc._proc.kill()
    calc._proc.wait()
    # Either the dead worker is noticed before the call or the call reports the crash; the next one works.
    first = calc("3 + 3")
    assert first in ("6", "Error: calculator worker crashed")
    assert calc("3 + 3") == "6"


def test_in_process_mode_has_the_same_observations() -> None:
    plain = Calculator(isolate=False)
    assert plain("1/3 * 2") == "2/3"
    assert plain("__import__('os')").startswith("Error: ")


@pytest.mark.slow
def test_timeout_holds_inside_a_ray_actor(ray_local) -> None:
    ray = ray_local

    @ray.remote
    class CalcActor:
        def __init__(self) -> None:
            self.calc = Calculator(timeout_s=1.0)

        def run(self, expression: str) -> tuple[str, float]:
            t0 = time.monotonic()
            return self.calc(expression), time.monotonic() - t0

    actor = CalcActor.remote()
    assert ray.get(actor.run.remote("2 + 3"))[0] == "5"
    obs, elapsed = ray.get(actor.run.remote(SLOW), timeout=60)
    assert obs == "Error: calculation timed out after 1s" and elapsed < 1.0 + SLACK_S
    assert ray.get(actor.run.remote("6 * 7"))[0] == "42"
    ray.kill(actor)


def test_the_worker_gets_no_secret_from_its_parents_environment(monkeypatch) -> None:
    """A worker evaluates what a model wrote: it sees the interpreter's settings, never the policy's or the search
    API's keys that its env worker holds."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hunter2")
    monkeypatch.setenv("SERPER_API_KEY", "serper-hunter2")
    with Calculator(timeout_s=5.0) as c:
        assert c("2 * 3") == "6"
        environ = Path(f"/proc/{c._proc.pid}/environ").read_bytes().decode(errors="replace")  # type: ignore[union-attr]
    assert "hunter2" not in environ and "OPENAI_API_KEY" not in environ
    assert "PYTHONPATH=" in environ  # what it needs still reaches it
    assert set(worker_env({"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x", "HOME": "/h"})) == {"PATH", "PYTHONPATH",
                                                                                       "OMP_NUM_THREADS"}  # fmt: skip
