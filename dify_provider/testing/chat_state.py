"""How chat messages progress: :class:`ChatEngine` (``state.chat``), the chat counterpart of the
run lifecycle in :mod:`~dify_provider.testing.state`.

A chatflow (``advanced-chat``) message is a workflow run with a message attached: the engine
creates both and the run's own task drives it; the engine's hooks turn the run's text chunks into
``message`` events and its end into ``message_end`` (or ``error``), in the order Dify's
``AdvancedChatAppGenerateTaskPipeline`` yields them. The other modes (``chat``, ``agent-chat``,
``completion``) run in Dify's API process without a graph: the engine drives their messages
itself, one asyncio task each (answer chunks, an optional hold, then ``message_end``).

Stop, as ``AppTaskService.stop_task`` does it: the legacy stop flag works only for the task's own
end user (same app and ``user``; anyone else's stop is a silent no-op), and a stop sent with a
chatflow app's key also sends the graph engine's stop command, which checks nothing and aborts any
graph run with that task id. Threading: everything here runs on the server loop; state changes
happen under the registry's ``cond``, as in :mod:`~dify_provider.testing.state`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing import chat_payloads as chat
from dify_provider.testing.catalog import ECHO_ANSWER
from dify_provider.testing.chats import ChatMessage, Conversation, MessageState
from dify_provider.testing.errors import DifyError, invalid_param
from dify_provider.testing.models import EmulatedApp
from dify_provider.testing.runs import Item, Node, Run, render
from dify_provider.testing.validation import validate_inputs

if TYPE_CHECKING:
    from dify_provider.testing.state import EmulatorState

log = logging.getLogger(__name__)

CONVERSATION_NOT_EXISTS = "Conversation Not Exists."
#: The graph engine's stop command (``GraphEngineManager.send_stop_command``).
STOP_COMMAND_REASON = "User requested stop"
MODEL_FAILURE = "Emulated model failure"


class ChatEngine:
    """Starts, drives, stops and finishes chat messages; every method runs on the loop thread."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    # -- starting --------------------------------------------------------------------------------

    def check(
        self,
        app: EmulatedApp,
        user: str,
        *,
        query: str,
        inputs: dict[str, Any],
        conversation_id: str | None,
        streaming: bool,
    ) -> tuple[Conversation | None, dict[str, Any]]:
        """The generator's checks, in its order (``*AppGenerator.generate``): blocking mode for an
        agent, an empty query, the conversation, then the inputs."""
        if app.mode == "agent-chat" and not streaming:
            raise invalid_param("Agent Chat App does not support blocking mode")
        if app.mode != "completion" and not query:
            raise invalid_param("query is required")
        conversation = None
        if conversation_id:
            conversation = self.state.chats.conversation(app, user, conversation_id)
            if conversation is None:
                raise DifyError.http(404, CONVERSATION_NOT_EXISTS)
        return conversation, validate_inputs(app, inputs)

    def start(
        self,
        app: EmulatedApp,
        user: str,
        *,
        query: str,
        inputs: dict[str, Any],
        files: list[Any],
        conversation: Conversation | None,
        streaming: bool,
    ) -> ChatMessage:
        """Create the message (and its conversation; a chatflow's run); :meth:`launch` starts it."""
        state = self.state
        book = state.chats
        with state.cond:
            scenario = state.next_scenario(app)
            if conversation is None:
                conversation = Conversation(
                    id=str(uuid.uuid4()), app=app, user=user, name=chat.conversation_name(query),
                    inputs=inputs, seq=book.next_seq(),
                )  # fmt: skip
            message = ChatMessage(
                id=str(uuid.uuid4()), task_id=str(uuid.uuid4()), conversation=conversation,
                query=query.replace("\x00", ""), inputs=inputs, turn=len(conversation.messages) + 1,
                seq=book.next_seq(), scenario=scenario, streaming=streaming,
            )  # fmt: skip
            if app.mode == "advanced-chat":
                run = state.create_run(app, user, inputs, files, message=message, scenario=scenario)
                message.run, message.task_id = run, run.task_id
            book.add(message)
            state._notify()
        return message

    def launch(self, message: ChatMessage) -> None:
        if message.run is not None:
            self.state.launch(message.run)
            return
        message.task = asyncio.get_running_loop().create_task(self._drive(message), name=f"dify-msg-{message.id}")
        message.task.add_done_callback(_log_crash)

    def subscribe(self, message: ChatMessage) -> asyncio.Queue[Item]:
        if message.run is not None:
            return self.state.subscribe(message.run)
        queue: asyncio.Queue[Item] = asyncio.Queue()
        message.subscribers.add(queue)
        return queue

    def unsubscribe(self, message: ChatMessage, queue: asyncio.Queue[Item]) -> None:
        (message.run.subscribers if message.run is not None else message.subscribers).discard(queue)

    def client_gone(self, message: ChatMessage) -> None:
        """A streaming client hung up early. A chatflow runs in Celery and carries on (as runs do);
        the other modes' pipeline is the request's generator: it dies with it, the model call
        finishes unheard and the message is never saved (answer stays empty), however far the
        generation got: it ends only where the stream delivers its last frame."""
        if message.run is not None:
            self.state.client_gone(message.run)
            return
        if message.orphaned:
            return
        if message.task is not None and not message.task.done():
            message.task.cancel()
        with self.state.cond:
            message.orphaned, message.held = True, False
            message.state, message.saved, message.usage = "running", False, None
            self.state._notify()

    # -- driving chat, agent-chat and completion messages ----------------------------------------

    def _emit(self, message: ChatMessage, event: dict[str, Any]) -> None:
        message.events.append(event)
        for queue in message.subscribers:
            queue.put_nowait(event)

    async def _drive(self, message: ChatMessage) -> None:
        scenario, agent = message.scenario, message.mode == "agent-chat"
        if agent:
            self._emit(message, chat.agent_thought(message, ""))
        for template in message.app.answer or ECHO_ANSWER:
            text = render(template, message.variables)
            if not text:
                continue
            await asyncio.sleep(scenario.step_seconds)
            with self.state.cond:
                message.answer += text
                self.state._notify()
            self._emit(message, chat.agent_message(message, text) if agent else chat.message_event(message, text))
        if agent:
            self._emit(message, chat.agent_thought(message, message.answer))
        if scenario.hold:
            with self.state.cond:
                message.held = True
                self.state._notify()
            await message.released.wait()  # until release(), or stop()/finish() cancel this task
        if scenario.status == "failed":
            self.fail(message, scenario.error or MODEL_FAILURE)
        else:
            self._end(message, "succeeded")

    def _end(self, message: ChatMessage, state: MessageState) -> None:
        with self.state.cond:
            message.state, message.saved, message.held = state, True, False
            message.usage = chat.usage(message)
            self.state._notify()
        self._emit(message, chat.message_end(message))

    def fail(
        self, message: ChatMessage, error: str, *, status: int = 400, code: str = "completion_request_error"
    ) -> dict[str, Any]:
        """End a running message with an in-stream ``error`` (a model's ``InvokeError`` unless told
        otherwise; blocking: the same as an HTTP error); returns the event. A chatflow's run fails."""
        event = chat.error_event(message, status, code, error)
        if message.run is not None:
            message.error = error
            self.state.fail(message.run, error)
            return event
        if message.state == "running":
            if message.task is not None and not message.task.done() and message.task is not asyncio.current_task():
                message.task.cancel()
            with self.state.cond:
                message.state, message.error, message.held = "failed", error, False
                self.state._notify()
            self._emit(message, event)
        return event

    # -- control -----------------------------------------------------------------------------------

    def stop_task(self, app: EmulatedApp, user: str, task_id: str) -> None:
        """``POST /chat-messages/{task_id}/stop`` and ``/completion-messages/...`` (mode checked)."""
        message = self.state.chats.by_task(task_id)
        run = self.state.run_by_task(task_id)
        owner = message.app if message is not None else run.app if run is not None else None
        owner_user = message.user if message is not None else run.user if run is not None else None
        if owner is not None and owner.name == app.name and owner_user == user:  # the legacy stop flag
            if message is not None and message.run is None:
                self.stop(message)
            elif run is not None:
                self.state.stop(run)
            return
        if app.mode == "advanced-chat" and run is not None:  # the graph engine's command: no checks
            self.state.abort(run, STOP_COMMAND_REASON)

    def stop(self, message: ChatMessage) -> bool:
        """Stop a running message: it ends with ``message_end`` (a chatflow: its run ``stopped``)."""
        if message.run is not None:
            return self.state.stop(message.run)
        if message.state != "running" or message.orphaned:
            return False
        if message.task is not None and not message.task.done():
            message.task.cancel()
        self._end(message, "stopped")
        return True

    def release(self, message: ChatMessage) -> None:
        if message.run is not None:
            self.state.release(message.run)
            return
        if not message.held:
            raise ValueError(f"message {message.id} is not held (it is {message.state})")
        message.released.set()

    def finish(self, message: ChatMessage, status: WorkflowRunStatus, error: str | None) -> None:
        """End an unfinished message now: ``succeeded``/``partial-succeeded`` normally, ``failed``
        with ``error`` (an in-stream error), ``stopped`` as the stop API does."""
        if message.run is not None:
            self.state.finish(message.run, status, None, error)
            return
        if message.state != "running":
            raise ValueError(f"message {message.id} already ended {message.state}")
        if status == WorkflowRunStatus.FAILED:
            self.fail(message, error or MODEL_FAILURE)
        elif status == WorkflowRunStatus.STOPPED:
            self.stop(message)
        elif status in (WorkflowRunStatus.SUCCEEDED, WorkflowRunStatus.PARTIAL_SUCCEEDED):
            if message.task is not None and not message.task.done():
                message.task.cancel()
            self._end(message, "succeeded")
        else:
            raise ValueError(f"cannot finish a message as {status.value!r}")

    # -- chatflow hooks (called by EmulatorState for runs with a message) --------------------------

    def chatflow_text(self, run: Run, text: str, selector: list[str]) -> dict[str, Any]:
        """A text chunk of a chatflow: a ``message`` event, and more of the answer."""
        message = run.message
        assert message is not None
        with self.state.cond:
            message.answer += text
            self.state._notify()
        return chat.message_event(message, text, selector)

    def chatflow_llm_done(self, run: Run, node: Node) -> None:
        """An LLM node finished: the usage so far is the message's, its tokens and price the node's."""
        message = run.message
        assert message is not None
        message.usage = chat.usage(message)
        node.tokens, node.price = message.usage["total_tokens"], message.usage["total_price"]
        node.prompt_tokens = message.usage["prompt_tokens"]
        node.outputs = {"text": message.answer}

    def chatflow_paused(self, run: Run) -> dict[str, Any]:
        """A paused chatflow saves its message and sends ``message_end`` (after ``workflow_paused``)."""
        message = run.message
        assert message is not None
        with self.state.cond:
            message.state, message.saved = "paused", True
            self.state._notify()
        return chat.message_end(message)

    def chatflow_ended(self, run: Run, finished: dict[str, Any]) -> list[dict[str, Any]]:
        """The frames a chatflow ends with, in the pipeline's order: success ``message_end`` then
        ``workflow_finished``; a stop the reverse; a failure ``workflow_finished`` then ``error``
        ("Run failed: ..."). A 1.13.2 stream closes at ``workflow_finished`` (``stream_topic_events``),
        so only a blocking call sees what follows it."""
        message = run.message
        assert message is not None
        status = run.stream_status or run.status
        with self.state.cond:
            if status == WorkflowRunStatus.FAILED:
                message.state = "failed"
                message.error = message.error or f"Run failed: {run.error}"
            else:
                message.state = "stopped" if status == WorkflowRunStatus.STOPPED else "succeeded"
                message.saved = True
            self.state._notify()
        if status == WorkflowRunStatus.FAILED:
            return [finished, chat.error_event(message, 400, "invalid_param", message.error or "")]
        if status == WorkflowRunStatus.STOPPED:
            return [finished, chat.message_end(message)]
        return [chat.message_end(message), finished]


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("emulated chat message crashed", exc_info=task.exception())
