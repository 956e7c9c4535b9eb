"""A third-party tool package, as a plug-in author would write one: kind ``echo``.

It is "installed" by putting ``tests/plugins/echo`` on ``PYTHONPATH``: the directory holds the
package and its ``.dist-info`` (``entry_points.txt`` registers ``echo`` in the ``noetl.tools``
group), exactly what ``pip install`` of a wheel leaves in site-packages.
"""

from __future__ import annotations

import os
from typing import Any

from noetl.tools.base import Call
from noetl.tools.spec import Config, model_fields, parse_config


class EchoConfig(Config):
    message: str
    repeat: int = 1
    upper: bool = False


class EchoTool:
    """Returns its message, repeated; the result names the process that ran it."""

    kind = "echo"
    config_model = EchoConfig
    config_fields, required_fields = model_fields(EchoConfig)
    description = "Echoes `message` `repeat` times (a test plug-in)."
    credential_types = ("echo_key",)
    result = {"type": "object", "properties": {"echo": {"type": "string"}, "pid": {"type": "integer"}}}
    example = "tool:\n  kind: echo\n  message: hello\n  repeat: 2\n"

    async def run(self, call: Call) -> Any:
        config = parse_config(EchoConfig, call)
        text = " ".join([config.message] * config.repeat)
        key = (call.credential or {}).get("data", {}).get("key") if call.credential else None
        return {"echo": text.upper() if config.upper else text, "pid": os.getpid(), "keyed": key is not None}


TOOL = EchoTool()
