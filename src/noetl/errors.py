"""The one error tree of NoETL.

Every error the product raises on purpose derives from :class:`NoetlError`. Each carries

* ``http_status`` - the status the HTTP API maps it to;
* ``exit_code``   - what the CLI exits with (2 for invalid input, 1 otherwise);
* context fields  - where it happened (file, line, column, step, field), so a message can say
  what and where without a traceback.

Tree::

    NoetlError
    ├── PlaybookError          invalid playbook (YAML, structure, references)      422 / exit 2
    ├── UsageError             invalid command line or request                    400 / exit 2
    ├── TemplateError          a template failed to render (undefined variable)   422 / exit 1
    ├── ToolError              a tool failed; carries the error envelope fields   500 / exit 1
    │   └── ToolConfigError    a task's configuration is wrong for its tool       422 / exit 2
    ├── CredentialError        a credential is missing or malformed                400 / exit 1
    └── ExecutionError         the execution itself failed or was cancelled       500 / exit 1
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """Where something sits in a source file (1-based line and column)."""

    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file or "<playbook>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where


class NoetlError(Exception):
    """Base of every NoETL error."""

    http_status = 500
    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        step: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.step = step
        self.field = field

    def __str__(self) -> str:
        parts: list[str] = []
        if self.location is not None:
            parts.append(str(self.location))
        if self.step is not None:
            parts.append(f"step '{self.step}'")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form used by the API and by ``--json`` outputs."""
        out: dict[str, object] = {"kind": self.kind, "message": self.message}
        if self.step is not None:
            out["step"] = self.step
        if self.field is not None:
            out["field"] = self.field
        if self.location is not None:
            out["file"] = self.location.file
            out["line"] = self.location.line
            out["column"] = self.location.column
        return out

    @property
    def kind(self) -> str:
        return "error"


class PlaybookError(NoetlError):
    """The playbook is not valid: bad YAML, unknown keys or kinds, broken references."""

    http_status = 422
    exit_code = 2

    @property
    def kind(self) -> str:
        return "validation"


class UsageError(NoetlError):
    """The command line or request is not valid (bad flag value, unreadable file)."""

    http_status = 400
    exit_code = 2

    @property
    def kind(self) -> str:
        return "usage"


class TemplateError(NoetlError):
    """A template failed to render; ``variable`` names the undefined variable when known."""

    http_status = 422

    def __init__(self, message: str, *, variable: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.variable = variable

    @property
    def kind(self) -> str:
        return "template"


class ToolError(NoetlError):
    """A tool failed. ``error_kind`` and ``details`` become ``output.error`` and tool details.

    ``details`` holds tool-specific parts of the envelope, e.g. ``{"http": {"status": 503}}``
    or ``{"pg": {"sqlstate": "42P01"}}`` or ``{"py": {"exception": ..., "traceback": ...}}``.
    """

    def __init__(
        self,
        message: str,
        *,
        error_kind: str = "tool",
        retryable: bool = False,
        details: dict[str, object] | None = None,
        data: object = None,
        **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.error_kind = error_kind
        self.retryable = retryable
        self.details = details or {}
        self.data = data

    @property
    def kind(self) -> str:
        return self.error_kind


class ToolConfigError(ToolError):
    """A task's configuration does not fit its tool (missing or wrong-typed field)."""

    http_status = 422
    exit_code = 2

    def __init__(self, message: str, **kw: object) -> None:
        kw.setdefault("error_kind", "config")
        super().__init__(message, **kw)  # type: ignore[arg-type]


class CredentialError(NoetlError):
    """A credential could not be found or has the wrong shape."""

    http_status = 400

    @property
    def kind(self) -> str:
        return "credential"


class ExecutionError(NoetlError):
    """The execution failed or was cancelled."""

    @property
    def kind(self) -> str:
        return "execution"


class SinkError(NoetlError):
    """A telemetry sink (ClickHouse, a metrics endpoint) did not take what was sent: the message
    names the sink, its address and what failed. Exporters retry; nothing in the log is lost."""

    http_status = 502

    @property
    def kind(self) -> str:
        return "sink"


class Forbidden(NoetlError):
    """The caller may not do this: a role or catalog path it was not given (403)."""

    http_status = 403

    @property
    def kind(self) -> str:
        return "forbidden"
