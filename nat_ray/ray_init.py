"""Joining or starting Ray, the one way every stage driver does it, and leaving it before a command prints its result.

``address`` (or ``$RAY_ADDRESS``) joins a running cluster; without one, an embedded local cluster starts. Ray
2.60 turns token authentication on for a new local cluster and says so at warning level on every start ("Token
authentication is enabled for this Ray cluster…"): that one message is filtered out here; authentication stays on,
and every other Ray message still shows. ``RAY_AUTH_MODE`` set to anything but ``token`` is refused, joining or
starting: Ray would otherwise turn authentication off without a word.

An embedded cluster is its owner's alone: its token file is made 0600 before Ray reads it (Ray writes
``~/.ray/auth_token`` with the default umask, readable by every user), and its node's address is the loopback one,
which is what Ray binds its GCS, raylet, worker, agent and metrics ports to (docs/design.md, "Who can reach a run").
The stages draw their own progress, so Ray Data's bars are off, and so is its notice that they are.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from nat_ray.errors import InputError

_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class _DropTokenAuthNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def init_ray(address: str | None = None) -> None:
    """Join ``address`` (else ``$RAY_ADDRESS``; "local" forces a new embedded cluster) or start an embedded one.

    Joining says so on stderr, with the cluster's nodes and CPUs, so a job's log shows where it ran."""
    import ray

    require_token_auth()  # first: a process told to run Ray without authentication is refused even if Ray is up
    if ray.is_initialized():
        return
    logger = logging.getLogger(_AUTH_LOGGER)
    if not any(isinstance(f, _DropTokenAuthNotice) for f in logger.filters):
        logger.addFilter(_DropTokenAuthNotice())
    target = address or os.environ.get("RAY_ADDRESS")
    joining = target not in (None, "", "local")
    start = functools.partial(
        ray.init, address=address, log_to_driver=False, include_dashboard=False, logging_level="WARNING"
    )
    if not joining:
        start_local(start)
        return
    start()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = ray.cluster_resources().get("CPU", 0)
    print(f"ray: joined the cluster at {target} ({len(nodes)} nodes, {cpus:g} CPUs)", file=sys.stderr)


# what Ray raises (and `ray start` prints) when its fixed 30 s wait for a new node's raylet to register runs out
START_TIMED_OUT = "timed out during startup"
# Ray's own switch for a loopback-only node (its default on macOS and Windows, where it avoids firewall prompts): with
# it off, the node's address is 127.0.0.1, and Ray 2.60 binds every server of the node to that address.
_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def require_token_auth() -> None:
    """Refuse ``RAY_AUTH_MODE`` other than ``token``: every cluster nat_ray starts or joins checks a token."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.strip().lower() != "token":
        raise InputError(
            f"RAY_AUTH_MODE={mode!r}: nat_ray runs Ray with token authentication only; unset RAY_AUTH_MODE or set it "
            "to token"
        )


def private_token_file() -> Path | None:
    """Make the token an embedded cluster will use readable by its owner only, creating it if there is none.

    Ray reads ``RAY_AUTH_TOKEN``, then the file ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``; it would create
    the last with mode 0644. Returns the file, or None when the token comes in ``RAY_AUTH_TOKEN``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    given = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(given) if given else Path.home() / ".ray" / "auth_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs stands
            _write_new_token(path)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path


def _write_new_token(path: Path) -> None:
    # O_EXCL: never overwrite a token a running cluster uses; 0600 from creation, never readable by others
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes: 256 random bits


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Ray's node address is loopback while the cluster starts: the GCS, raylet and agents it spawns inherit the
    switch, and this driver's node keeps 127.0.0.1 for the cluster's life. Restored afterwards, so a `ray start` this
    process runs later (a test's head) is not made loopback-only."""
    import ray._private.ray_constants as ray_constants

    before_env, before_const = os.environ.get(_CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # read when Ray picks the node's address (services.get_node_ip_address)
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_const
        if before_env is None:
            os.environ.pop(_CLUSTER_SWITCH, None)
        else:
            os.environ[_CLUSTER_SWITCH] = before_env


def start_local(start: Callable[[], object], attempts: int = 2) -> None:
    """Start an embedded cluster with ``start``: token authentication with a 0600 token file, every port on loopback,
    and again if its node does not register in time.

    Ray waits a fixed 30 s for a new node's raylet to register with its GCS; a machine busy with other work (a
    training run, a compile) can take longer, and the start fails although nothing is wrong. What the failed start
    left running (GCS, raylet, agents: processes of this driver) is killed before the next try."""
    import psutil

    require_token_auth()
    private_token_file()
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    for attempt in range(1, attempts + 1):
        try:
            with _loopback_node():
                start()
            return
        except Exception as exc:
            if attempt == attempts or START_TIMED_OUT not in str(exc):
                raise
            for p in me.children(recursive=True):
                if p.pid not in before:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
            print(f"ray: the local cluster did not start ({exc}); starting it again", file=sys.stderr)


def private_token_env(folder: Path) -> dict[str, str]:
    """The environment for a Ray cluster with token authentication and a new token of its own, kept in
    ``folder/auth_token`` (mode 0600) rather than ``~/.ray/auth_token``: for a cluster started beside others on one
    machine (a test's head, a benchmark's nodes), whose processes and clients all get this environment.

    ``RAY_AUTH_TOKEN`` must not be set beside it: Ray reads that variable before the file."""
    path = Path(folder) / "auth_token"
    _write_new_token(path)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def leave_ray() -> None:
    """Disconnect from Ray, if this process joined it; a command calls it before writing its result to stdout.

    Ray prints the errors it saw (a lost node, a retried task) to the driver's stdout, and the repeated ones only
    when it disconnects, at exit: after the summary, which then would not be stdout's last line."""
    if "ray" in sys.modules:  # a command that never used Ray does not pay for importing it here
        import ray

        if ray.is_initialized():
            ray.shutdown()


def quiet_ray_data() -> None:
    """Ray Data without its progress bars (the stage has its own) and without the notice that they are off."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
