"""How user code is contained: the environment, user, directory and scope of python and shell tasks.

A :class:`Sandbox` is built once where the runtime starts (worker or local runtime) and handed to
the tools through :class:`noetl.tools.base.Services`. It says:

* **the environment** a task's process gets: only :data:`BASE_VARIABLES` of the runtime's own
  environment (``PATH``, locale, time zone, ``PYTHONPATH``), ``HOME``/``TMPDIR`` pointing at its
  private directory, and what the task declares in ``env``. Nothing else: no ``NOETL_*`` setting,
  no database URL, no key, no service token.
* **the user** it runs as (``--task-user``): a separate unprivileged account, so the worker's files
  (the credential key file, mode 0600) and ``/proc/<worker>/environ`` are out of its reach.
* **a private directory** per shell task and per python child (emptied after each task), mode 0700
  and owned by the task user, under a parent the worker owns with mode 0711 (not listable).
* **the scope** of a python child: the first ``scope_depth`` segments of the playbook's catalog path;
  a warm child serves one scope and is never handed to a task of another.

What is not contained (network, CPU of shell tasks, the same-user case) is documented in the
"Isolation model" section of docs/security.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from noetl.errors import UsageError

BASE_VARIABLES: Final = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")
"""The runtime's environment variables a task's process inherits (none of them carries a secret)."""

DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_SCOPE_DEPTH: Final = 1
AUTO_USER: Final = "nobody"
_PROBE_SECONDS: Final = 30.0


@dataclass(frozen=True, slots=True)
class TaskUser:
    """The unprivileged account user code runs as."""

    name: str
    uid: int
    gid: int


@dataclass(slots=True)
class Sandbox:
    """See the module docstring. The default (no user, no private directories) only cleans the environment."""

    base_env: Mapping[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    user: TaskUser | None = None
    private_dirs: bool = False
    scope_depth: int = DEFAULT_SCOPE_DEPTH
    _root: str | None = None

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        user: TaskUser | None = None,
        private_dirs: bool = False,
        scope_depth: int = DEFAULT_SCOPE_DEPTH,
    ) -> Sandbox:
        """A sandbox whose base environment is the :data:`BASE_VARIABLES` found in ``environ``."""
        base = {name: environ[name] for name in BASE_VARIABLES if environ.get(name)}
        base.setdefault("PATH", DEFAULT_PATH)
        return cls(base, user, private_dirs, scope_depth)

    def env(self, extra: Mapping[str, str | None] | None = None, home: str | None = None) -> dict[str, str]:
        """A task process's whole environment: the base, its directory, then the task's ``env``."""
        env = dict(self.base_env)
        if home is not None:
            env["HOME"] = env["TMPDIR"] = home
        for name, value in (extra or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    @property
    def uid(self) -> int | None:
        """``user=`` for ``subprocess.Popen``: the task user's uid, or None (the runtime's own)."""
        return None if self.user is None else self.user.uid

    @property
    def gid(self) -> int | None:
        """``group=`` for ``subprocess.Popen``."""
        return None if self.user is None else self.user.gid

    @property
    def groups(self) -> list[int] | None:
        """``extra_groups=`` for ``subprocess.Popen``: none at all for the task user."""
        return None if self.user is None else []

    def scope(self, path: str | None) -> str:
        """The scope of a playbook: the first ``scope_depth`` segments of its catalog path."""
        if not path or self.scope_depth <= 0:
            return ""
        return "/".join(path.strip("/").split("/")[: self.scope_depth])

    def make_dir(self) -> str | None:
        """A fresh private directory for a task (None when private directories are off)."""
        if not self.private_dirs:
            return None
        import tempfile

        path = tempfile.mkdtemp(prefix="task-", dir=self._parent())
        if self.user is not None:
            os.chown(path, self.user.uid, self.user.gid)
        return path

    def remove_dir(self, path: str | None) -> None:
        if path is not None:
            import shutil

            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Remove the parent of the private directories (at shutdown)."""
        if self._root is not None:
            import shutil

            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def _parent(self) -> str:
        if self._root is None or not os.path.isdir(self._root):
            import tempfile

            self._root = tempfile.mkdtemp(prefix=f"noetl-tasks-{os.getpid()}-")
            os.chmod(self._root, 0o711)  # the task user may enter its own directory, not list the others
        return self._root


def inherited() -> Sandbox:
    """The default sandbox: a clean environment built from this process's non-secret variables."""
    return Sandbox.from_environ(os.environ)


def task_user(name: str) -> TaskUser:
    """The account ``name`` (or a numeric uid); UsageError when unknown or root."""
    import pwd

    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"task user {name!r} does not exist on this machine (--task-user)") from None
    if entry.pw_uid == 0:
        raise UsageError(f"task user {name!r} is root; user code must run as an unprivileged user")
    return TaskUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def probe(sandbox: Sandbox, executable: str = sys.executable) -> str | None:
    """Why the task user cannot start a python child (interpreter or noetl unreadable), or None."""
    import subprocess

    command = [executable, "-c", "import noetl.tools.pychild"]
    try:
        done = subprocess.run(
            command,
            env=sandbox.env(),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=_PROBE_SECONDS,
            user=sandbox.uid,
            group=sandbox.gid,
            extra_groups=sandbox.groups,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return None


_probed: dict[tuple[str, str], str | None] = {}


def for_worker(task_user_name: str, scope_depth: int) -> tuple[Sandbox, str | None]:
    """A worker's sandbox (private directories on) and a warning to log when it runs tasks as itself.

    The task user is ``task_user_name``, else :data:`AUTO_USER` when the worker runs as root. A
    configured user that cannot start python children (interpreter or package unreadable to it) is
    a UsageError; the automatic one then falls back to the worker's own user, with the warning."""
    user, explicit = choose_user(task_user_name, os.geteuid())
    sandbox = Sandbox.from_environ(os.environ, user=user, private_dirs=True, scope_depth=scope_depth)
    if user is None:
        if os.geteuid() == 0:
            return sandbox, "python and shell tasks run as root: no task user (set --task-user)"
        return sandbox, None
    key = (user.name, sys.executable)
    if key not in _probed:
        _probed[key] = probe(sandbox)
    problem = _probed[key]
    if problem is None:
        return sandbox, None
    if explicit:
        raise UsageError(
            f"task user {user.name!r} cannot start python tasks ({sys.executable}: {problem}); "
            "give it read and search access to the interpreter and the noetl package (--task-user)"
        )
    sandbox.user = None
    return sandbox, (
        f"python and shell tasks run as the worker's own user: {user.name!r} cannot start python "
        f"({problem}); set --task-user to an account that can (see docs/security.md)"
    )


def choose_user(configured: str | None, euid: int) -> tuple[TaskUser | None, bool]:
    """The task user to try and whether it was asked for explicitly: the configured one, else
    :data:`AUTO_USER` when running as root, else none (tasks run as the runtime's own user)."""
    if configured:
        return task_user(configured), True
    if euid == 0:
        try:
            return task_user(AUTO_USER), False
        except UsageError:
            return None, False
    return None, False
