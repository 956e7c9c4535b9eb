"""NoETL: declarative workflow playbooks on an event-sourced engine.

``noetl.dsl`` parses playbooks, ``noetl.engine`` decides what runs next from the event log,
``noetl.tools`` runs tasks, ``noetl.runtime`` drives executions, ``noetl.cli`` is the command line.
"""

__version__ = "0.1.0"
