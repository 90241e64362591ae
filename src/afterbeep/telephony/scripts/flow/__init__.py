"""The flow runner: a call walks the graph of its flow, one node at a time.

`run_flow` (runner.py) is the one executor: it starts at the entry, runs the node's script,
follows the edge of the outcome it returns (`domain.flows.next_node`), ends the call when a
node ends the flow, an outcome has no edge, or the call has visited `MAX_VISITS` nodes, and
logs each of these. Each node kind is one short coroutine in a module of its own (entry.py,
play.py, say.py, menu.py, collect.py, time_condition.py, voicemail.py, hangup.py,
pbx_nodes.py), written over the small call interface and returning its outcome
(the edge's `sourceHandle`), or None when the flow ends there.

What nodes need from the rest of the service (media, rendered speech, schedules, the clock,
the deposit script) comes through `FlowEnv`, the runner's port (base.py). A call works on
the `FlowRun` it was given, the flow version it started with, and never reads the flow again.
"""

from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun
from afterbeep.telephony.scripts.flow.runner import run_flow

__all__ = ["FlowEnv", "FlowRun", "run_flow"]
