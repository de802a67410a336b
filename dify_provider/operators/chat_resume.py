"""What a retry of a chat task does with the message an earlier try sent.

A chatflow's message is a workflow run: the run-detail endpoint says how it is doing, and the
workflow rules apply (:mod:`dify_provider.operators.resume`). A chat or agent message has no
run: the only record of it is the message in ``GET /messages``, whose answer Dify saves when the
stream it was sent on ends (a message whose stream was cut stays empty for good). Either way a
retry never sends the query again while the earlier message may still answer it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dify_provider.client import errors as e
from dify_provider.client.status import WaitPolicy
from dify_provider.client.waiting import Snapshot
from dify_provider.operators.resume import earlier_run

if TYPE_CHECKING:
    from dify_provider.client.chat.models import Message
    from dify_provider.client.sync import DifyClient
    from dify_provider.operators.run_memory import RunMemory


@dataclass(frozen=True)
class EarlierMessage:
    """The message an earlier try sent, which this try takes over instead of sending one."""

    message_id: str | None
    conversation_id: str | None
    task_id: str | None
    #: The chatflow's workflow run (None for chat, agent and completion apps).
    run_id: str | None = None
    #: The run already ended as the task wants (chatflow): finish with it.
    done: Snapshot | None = None
    #: The answered message as ``GET /messages`` shows it (chat and agent apps).
    message: Message | None = None


def earlier_message(client: DifyClient, memory: RunMemory, policy: WaitPolicy, log: Any, *, try_number: int,
                    user: str, query: str, conversation_id: str | None) -> EarlierMessage | None:
    """What a retry should take over, if anything; ``None``: send the query."""
    if try_number <= 1:
        return None
    record = memory.get()
    if record.get("workflow_run_id"):
        run = earlier_run(client, memory, policy, log, try_number=try_number, user=user, find_by_user=False)
        if run is None:
            return None
        return EarlierMessage(record.get("message_id"), record.get("conversation_id"), run.task_id, run.run_id,
                              run.done)
    if record.get("delivered") or record.get("stopped"):
        log.info("The message of an earlier try was %s: sending the query again",
                 "delivered" if record.get("delivered") else f"stopped ({record['stopped']})")
        return None
    message_id, conv = record.get("message_id"), record.get("conversation_id") or conversation_id
    since = record.get("starting_at")
    if message_id is None and since is None:
        return None
    message = None
    if conv:
        message = find_message(client, conv, user, message_id=message_id, query=query, since=since)
    elif since is not None:  # a new conversation whose id the lost answer would have named
        for found in _recent_conversations(client, user, since):
            message = find_message(client, found, user, message_id=None, query=query, since=since)
            if message is not None:
                break
    if message is None:
        log.warning("Retry %s: the message an earlier try sent is not in Dify's messages of end user %r: sending "
                    "the query again", try_number, user)
        return None
    if not message.answer or message.status == "error":
        # Dify saves such an answer when its stream ends; an empty one was lost with the stream.
        log.warning("Retry %s: message %s of an earlier try has no answer in Dify (%s): sending the query again",
                    try_number, message.id, message.error or "its stream was cut before the end")
        return None
    log.info("Retry %s: taking over message %s, answered for an earlier try, instead of sending the query again",
             try_number, message.id)
    return EarlierMessage(message.id, message.conversation_id, record.get("task_id"), message=message)


def find_message(client: DifyClient, conversation_id: str, user: str, *, message_id: str | None, query: str,
                 since: float | None) -> Message | None:
    """The message by id, or else the newest one asking ``query`` since ``since``, among the
    conversation's latest messages (``GET /messages`` lists the newest page first)."""
    try:
        page = client.list_messages(conversation_id, user, limit=20)
    except e.DifyError:
        return None
    for message in reversed(page.data):  # newest last in Dify's page: look at the newest first
        if message_id is not None:
            if message.id == message_id:
                return message
            continue
        if message.query == query and (since is None or (message.created_at or 0) >= int(since) - 1):
            return message
    return None


def _recent_conversations(client: DifyClient, user: str, since: float) -> list[str]:
    try:
        page = client.list_conversations(user, limit=5)
    except e.DifyError:
        return []
    return [c.id for c in page.data if (c.created_at or 0) >= int(since) - 1]
