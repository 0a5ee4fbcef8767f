"""A head started the way cluster/README.md documents (`RAY_AUTH_MODE=token`, a token generated before it starts)
refuses a client with no token and a client with the wrong one, on the jobs API (HTTP and `ray job submit`) and on
`ray.init(address=…)`; with its token, a job is submitted and runs. The token is in no log, job log or output."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cluster.head import VENV_BIN, Head, local_head

pytestmark = pytest.mark.slow
WRONG = "0" * 64  # the shape of a real token (64 hex digits), not this head's


def _status(url: str, token: str | None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _clients(head: Head, empty_home: Path) -> dict[str, dict[str, str]]:
    """The environments of three clients: none has a token anywhere (an empty home, no RAY_AUTH_*), one has the
    wrong token, one has the head's."""
    bare = {k: v for k, v in head.env.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(empty_home)}
    return {
        "no token": bare,
        "wrong token": bare | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": WRONG},
        "the token": head.env,
    }


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def test_a_token_authenticated_head_refuses_clients_without_its_token(tmp_path: Path) -> None:
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    with local_head(num_cpus=1) as head:
        jobs = f"{head.dashboard}/api/jobs/"
        assert _status(jobs, None) == 401
        assert _status(jobs, WRONG) == 403
        assert _status(jobs, head.token) == 200

        outputs: list[str] = []
        connect = f"import ray; ray.init(address={head.gcs!r}); print('connected', len(ray.nodes()))"
        clients = _clients(head, empty_home)

        def attempts(who: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
            job_id = "job-" + who.replace(" ", "-")
            submit = [str(VENV_BIN / "ray"), "job", "submit", "--address", head.dashboard, f"--submission-id={job_id}"]
            submitted = _run([*submit, "--", "python", "-c", "print('the job ran')"], clients[who])
            return submitted, _run([sys.executable, "-c", connect], clients[who])

        with ThreadPoolExecutor(len(clients)) as pool:  # the three clients at once: each mostly waits on the head
            results = dict(zip(clients, pool.map(attempts, clients), strict=True))
        for who, (submitted, joined) in results.items():
            outputs += [submitted.stdout, submitted.stderr, joined.stdout, joined.stderr]
            if who == "the token":
                assert submitted.returncode == 0 and "the job ran" in submitted.stdout, submitted.stderr[-2000:]
                assert joined.returncode == 0 and "connected 1" in joined.stdout, joined.stderr[-2000:]
            else:
                assert submitted.returncode != 0 and "the job ran" not in submitted.stdout, (who, submitted.stdout)
                reason = "no authentication token was found" if who == "no token" else "token is invalid"
                assert reason in submitted.stderr, (who, submitted.stderr[-2000:])
                assert joined.returncode != 0 and "connected" not in joined.stdout, (who, joined.stdout)
                assert "ray-security/token-auth" in joined.stderr, (who, joined.stderr[-2000:])
        # the refused submissions never became jobs; the accepted one did, and its log is there
        listed = _run([str(VENV_BIN / "ray"), "job", "list", "--address", head.dashboard], head.env)
        assert "job-the-token" in listed.stdout and "job-no-token" not in listed.stdout, listed.stdout[-2000:]
        logs = _run([str(VENV_BIN / "ray"), "job", "logs", "--address", head.dashboard, "job-the-token"], head.env)
        assert "the job ran" in logs.stdout
        assert head.assert_token_absent(*outputs, listed.stdout, logs.stdout, logs.stderr) > 10
