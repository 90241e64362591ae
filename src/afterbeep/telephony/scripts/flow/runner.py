"""The executor: a call walks its flow from the entry, node by node, until the flow ends.

    entry → (the node's script → its outcome → the edge drawn for it) → ... → the call ends

The call ends when a node ends the flow (voicemail, hangup, enqueue, ringGroup, user), when an
outcome has no edge drawn, when the caller hangs up, or on the visit past `MAX_VISITS` (a
loop in the graph must not spin forever). Each of these is one log line naming the flow, its
version and the node, never the caller's number or keys. The call is hung up in every case.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from afterbeep.domain.flows import MAX_VISITS, FlowNode, NodeKind, next_node
from afterbeep.telephony.interface import Call, CallEnded
from afterbeep.telephony.scripts.flow.base import FlowEnv, FlowRun, NodeScript, log
from afterbeep.telephony.scripts.flow.collect import collect
from afterbeep.telephony.scripts.flow.entry import entry
from afterbeep.telephony.scripts.flow.hangup import hangup
from afterbeep.telephony.scripts.flow.menu import menu
from afterbeep.telephony.scripts.flow.pbx_nodes import enqueue, ring_group, user, voicemail_main
from afterbeep.telephony.scripts.flow.play import play
from afterbeep.telephony.scripts.flow.say import say
from afterbeep.telephony.scripts.flow.time_condition import time_condition
from afterbeep.telephony.scripts.flow.voicemail import voicemail

NODE_SCRIPTS: Mapping[NodeKind, NodeScript] = MappingProxyType(
    {
        NodeKind.ENTRY: entry,
        NodeKind.PLAY: play,
        NodeKind.SAY: say,
        NodeKind.MENU: menu,
        NodeKind.COLLECT: collect,
        NodeKind.TIME_CONDITION: time_condition,
        NodeKind.VOICEMAIL: voicemail,
        NodeKind.HANGUP: hangup,
        NodeKind.ENQUEUE: enqueue,
        NodeKind.RING_GROUP: ring_group,
        NodeKind.USER: user,
        NodeKind.VOICEMAIL_MAIN: voicemail_main,
    }
)


async def run_flow(call: Call, run: FlowRun, env: FlowEnv) -> None:
    """Run the flow `run` on the call, from its entry to its end; the call is hung up after."""
    node = run.graph.entry
    if node is None:
        log.warning("flow %s v%d has no entry; ending the call", run.flow_id, run.version)
    visits = 0
    try:
        while node is not None:
            if visits == MAX_VISITS:
                log.warning(
                    "%s: the call visited %d nodes, the most a call may; ending it",
                    run.where(node),
                    visits,
                )
                break
            visits += 1
            node = await _step(call, run, env, node)
    except CallEnded:
        assert node is not None
        log.info("%s: the caller hung up", run.where(node))
    finally:
        await call.hangup()


async def _step(call: Call, run: FlowRun, env: FlowEnv, node: FlowNode) -> FlowNode | None:
    """Run one node; the node its outcome leads to, or None when the flow ends here."""
    kind = node.node_kind
    if kind is None:
        log.warning("%s: unknown node kind; ending the call", run.where(node))
        return None
    outcome = await NODE_SCRIPTS[kind](call, run, env, node)
    if outcome is None:
        log.info("%s: the flow ends here", run.where(node))
        return None
    following = next_node(run.graph, node.id, outcome)
    if following is None:
        log.info("%s: no edge for %r; ending the call", run.where(node), outcome)
    else:
        log.debug("%s: %s -> node %s", run.where(node), outcome, following.id)
    return following
