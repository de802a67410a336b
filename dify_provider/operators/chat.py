"""``DifyChatOperator``: ask a Dify chat app (chatflow, chat, agent or completion) as a task.

The message is always streamed: agent apps support nothing else, and the first events name the
Dify task (to stop it), the message and the conversation (to find it again), and for a chatflow
its workflow run. A chatflow is then awaited like a workflow run, by the same machinery
(:class:`~dify_provider.operators.base.DifyRunOperatorBase`): on its stream, by polling the
run-detail endpoint, or in the triggerer. The other modes have no run to poll, so their stream is
read to ``message_end``; if it breaks, the answer is awaited in ``GET /messages``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from dify_provider.client import errors as e
from dify_provider.client._checks import check_files, check_inputs, check_uuid
from dify_provider.client.status import Reason, Verdict
from dify_provider.client.waiting import Snapshot, human_duration
from dify_provider.operators.app_mode import CHAT_MODES, read_info, wrong_app_error
from dify_provider.operators.base import DifyRunOperatorBase, RunTry
from dify_provider.operators.chat_resume import EarlierMessage, earlier_message, find_message
from dify_provider.operators.run_memory import RunMemory, default_user, try_number
from dify_provider.outcome import airflow_error, conclude
from dify_provider.provider_info import DIFY_DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from dify_provider.client.chat.models import Message
    from dify_provider.client.sync import DifyClient, StreamDeadline

#: Pushed when known (``usage`` is pushed by the base, from its account); citations from ``message_end``.
RESULT_KEYS = ("status", "retriever_resources", "total_steps", "elapsed_time", "total_tokens")
CHATFLOW = "advanced-chat"
COMPLETION = "completion"
#: Seconds of silence a chat, agent or completion stream may keep (Dify's own SSE idle limit: 300 s).
MESSAGE_IDLE_LIMIT = 600.0


class DifyChatOperator(DifyRunOperatorBase):
    """Send one message to a Dify chat app and return its answer.

    Serves chatflow (``advanced-chat``), ``chat`` and ``agent-chat`` apps through
    ``POST /chat-messages`` and ``completion`` apps through ``POST /completion-messages``; the mode
    comes from ``GET /info``, read once per task. The return value is the answer text. XCom keys,
    each pushed as soon as it is known: ``task_id``, ``message_id``, ``conversation_id``,
    ``workflow_run_id`` (chatflow), ``trace_id``, then ``status``, ``usage`` (tokens, price, currency
    and, for a chatflow, per node), ``retriever_resources`` (citations) and for a chatflow ``total_steps`` and
    ``elapsed_time``. Multi-turn: pass an earlier task's ``conversation_id`` XCom.

    :param query: the user's message (templated); required except for completion apps.
    :param inputs: the app's input variables (templated dict).
    :param conversation_id: continue this conversation (templated; a UUID). Dify ties a
        conversation to its end user: keep ``user`` the same across the tasks of a conversation
        (the default is, within one DAG run).
    :param user: Dify end-user id (templated). Default: one per DAG run,
        ``airflow:<dag_id>:<run_id>``, so that the tasks of a DAG run can share conversations.
    :param files: files for the message (templated), as Dify takes them.
    :param workflow_id: pin a published chatflow version (templated).
    :param auto_generate_name: let Dify name a new conversation with the model (costs tokens).
    :param deferrable: a chatflow's wait goes to the triggerer (Dify >= 1.13); chat, agent and
        completion apps have no run to wait on there, so the worker reads their stream.
    :param timeout: seconds for the whole answer; past it the message is stopped and the task fails.
    :param max_total_tokens: budget in tokens over all tries of this task instance: crossing it
        stops the run and fails the task without retries (see README, "Usage and budgets").
    :param max_total_price: budget in money, an amount and the app's currency (``"0.50 USD"``).
    :param human_input: when a chatflow pauses on a Human Input node: ``"wait"`` (default: someone
        answers in Dify), ``"fail"``, or ``"airflow"`` (Airflow 3.1+: answered as this task's required
        action in the Airflow UI, see README "Human input").
    """

    template_fields = ("query", "inputs", "conversation_id", "user", "files", "workflow_id", "dify_conn_id")
    template_fields_renderers = {"inputs": "json", "files": "json"}
    ui_color = "#e0d4fc"
    run_noun = "chatflow run"
    not_again = "not re-sending the message"

    def __init__(
        self,
        *,
        query: str | None = None,
        inputs: dict[str, Any] | None = None,
        conversation_id: str | None = None,
        user: str | None = None,
        files: list[dict[str, Any]] | None = None,
        workflow_id: str | None = None,
        auto_generate_name: bool = False,
        deferrable: bool | None = None,
        poll_interval: float = 5.0,
        max_poll_interval: float | None = None,
        timeout: float = 24 * 3600,
        fail_on_partial: bool = False,
        max_total_tokens: int | None = None,
        max_total_price: str | None = None,
        human_input: str = "wait",
        dify_conn_id: str = DIFY_DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(user=user, deferrable=deferrable, poll_interval=poll_interval,
                         max_poll_interval=max_poll_interval, timeout=timeout, fail_on_partial=fail_on_partial,
                         max_total_tokens=max_total_tokens, max_total_price=max_total_price,
                         human_input=human_input, dify_conn_id=dify_conn_id, **kwargs)
        self.query = query
        self.inputs = inputs if inputs is not None else {}
        self.conversation_id = conversation_id
        self.files = files
        self.workflow_id = workflow_id
        self.auto_generate_name = auto_generate_name
        self._mode: str | None = None
        self._stream: Any = None

    # --- execute ---------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        query, inputs, files, conversation_id, workflow_id = self._checked_arguments()
        user = self.user or default_user(context, scope="dag_run")
        memory = RunMemory(context)
        with self._kept(memory, context), self._client(context) as client:
            t = self._new_try(client, context, memory, user)
            mode = self._mode = self._app_mode(client)
            if not query.strip() and mode != COMPLETION:
                raise AirflowFailException(f"query: is empty; {mode!r} apps answer a message, so give the task a "
                                           "`query` (only completion apps may go without)")
            earlier = earlier_message(client, memory, self.policy, self.log, try_number=try_number(context),
                                      user=user, query=query, conversation_id=conversation_id)
            if earlier is not None:
                return self._take_over(t, earlier)
            memory.starting(user, t.started)
            memory.mark(mode=mode)
            with self._sender(client, mode) as sender:
                if mode == COMPLETION:
                    stream = sender.completion_message(inputs, user, query=query or None, response_mode="streaming",
                                                       files=files)
                else:
                    stream = sender.chat_message(query, inputs, user, response_mode="streaming",
                                                 conversation_id=conversation_id, files=files,
                                                 auto_generate_name=self.auto_generate_name, workflow_id=workflow_id)
                self._stream = stream
                with stream.hang_up_at(t.started + self.timeout) as deadline:
                    return self._converse(t, stream, deadline)

    def _checked_arguments(self) -> tuple[str, dict[str, Any], list[dict[str, Any]] | None, str | None, str | None]:
        try:
            if self.query is not None and not isinstance(self.query, str):
                raise e.DifyConfigError("query", f"must be a string, not {type(self.query).__name__}")
            conversation_id = (None if self.conversation_id in (None, "")
                               else check_uuid("conversation_id", self.conversation_id))
            workflow_id = None if self.workflow_id in (None, "") else check_uuid("workflow_id", self.workflow_id)
            return self.query or "", check_inputs(self.inputs), check_files(self.files), conversation_id, workflow_id
        except e.DifyConfigError as exc:
            raise AirflowFailException(str(exc)) from exc

    @staticmethod
    def _sender(client: DifyClient, mode: str) -> contextlib.AbstractContextManager[DifyClient]:
        """The client that sends the message. A chat, agent or completion answer is lost when its
        stream is hung up (Dify saves it only at the stream's end), so a silent stream (a slow
        model, a buffering proxy) is waited out far longer than a run's, whose loss is a poll."""
        if mode == CHATFLOW or client.config.stream_idle_timeout >= MESSAGE_IDLE_LIMIT:
            return contextlib.nullcontext(client)
        from dify_provider.client import DifyClient

        return DifyClient(dataclasses.replace(client.config, stream_idle_timeout=MESSAGE_IDLE_LIMIT))

    def _app_mode(self, client: DifyClient) -> str:
        info = read_info(client, self.dify_conn_id)
        assert info is not None  # required: errors raise
        mode, self._app_name = info.mode, info.name or None
        if mode not in CHAT_MODES:
            raise wrong_app_error(self.dify_conn_id, mode, type(self).__name__)
        return mode

    def _take_over(self, t: RunTry, earlier: EarlierMessage) -> Any:
        self._note(t, earlier.task_id, earlier.message_id, earlier.conversation_id)
        extra = self._deferred_kwargs(t)
        if earlier.run_id is not None:
            self._push_ids(t, earlier.run_id, earlier.task_id)
            if earlier.done is not None:
                return self._finish(t.context, t.memory, earlier.done, **extra)
            return self._wait(t, earlier.run_id, None, None, **extra)
        return self._finish_message(t, earlier.message)

    # --- the stream ----------------------------------------------------------------------------

    def _note(self, t: RunTry, task_id: str | None, message_id: str | None, conversation_id: str | None) -> None:
        """Record and push the ids the stream announced, once each."""
        ti, known = t.context["ti"], getattr(self, "_known", {})
        self._known = known
        new = {k: v for k, v in (("task_id", task_id), ("message_id", message_id),
                                 ("conversation_id", conversation_id)) if v and known.get(k) != v}
        if not new:
            return
        known.update(new)
        if "task_id" in new:
            self._dify_task_id = new["task_id"]
        t.memory.mark(**new)
        for key, value in new.items():
            ti.xcom_push(key=key, value=value)
        if "message_id" in new:
            self.log.info("Sent message %s to Dify %s app (task %s, conversation %s)", new["message_id"], self._mode,
                          known.get("task_id"), known.get("conversation_id"))
            if self.deferrable and self._mode != CHATFLOW:
                self.log.info("deferrable=True: a %s app's message has no workflow run to wait on in the triggerer, "
                              "so this worker reads its stream to the end", self._mode)

    def _converse(self, t: RunTry, stream: Any, deadline: StreamDeadline) -> Any:
        try:
            for event in stream:
                self._note(t, stream.task_id, stream.message_id, stream.conversation_id)
                self._count(t, t.account.see(event))
                if stream.workflow_run_id:  # a chatflow: from here it is a workflow run
                    t.memory.started(stream.workflow_run_id, stream.task_id, t.user)
                    url = self._push_ids(t, stream.workflow_run_id, stream.task_id)
                    self.log.info("Chatflow run %s%s", stream.workflow_run_id, f": {url}" if url else "")
                    return self._wait(t, stream.workflow_run_id, stream, deadline, **self._deferred_kwargs(t))
        except e.DifyError as exc:
            return self._broken(t, exc, deadline)
        return self._finish_message(t, None)

    def _broken(self, t: RunTry, exc: e.DifyError, deadline: StreamDeadline) -> Any:
        known = getattr(self, "_known", {})
        if deadline.fired:
            if self._dify_task_id:
                self._stop_run(t.client, t.user, t.memory, why=f"timeout ({human_duration(self.timeout)})")
            raise AirflowException(f"gave up after {human_duration(self.timeout)} (timeout) waiting for the answer"
                                   + (f" to message {known['message_id']}" if known.get("message_id") else ""))
        if isinstance(exc, e.DifyNotChatAppError):
            raise wrong_app_error(self.dify_conn_id, self._mode, type(self).__name__) from exc
        if not known.get("message_id"):
            if isinstance(exc, e.DifyAPIError | e.DifyConfigError) or getattr(exc, "sent", True) is False:
                raise airflow_error(exc) from exc
            raise AirflowException(
                f"sending the message failed ambiguously ({exc}); it was not re-sent because Dify has no idempotency "
                "key and a second request could be a second paid answer. A retry of this task first looks for it "
                "in Dify's messages."
            ) from exc
        if isinstance(exc, e.DifyAPIError):
            raise airflow_error(exc) from exc  # an error event: Dify ended the message itself
        # Dify saves a chat, agent or completion answer only when the stream it is sent on ends:
        # the one cut here is lost for good (the message stays empty), so reading it back cannot work.
        raise AirflowException(
            f"the stream of message {known['message_id']} ended before its answer ({exc}). A {self._mode} app saves "
            "its answer only at the end of its stream, so this one is lost; a retry of this task (if any) sends the "
            "message again, as a new, paid answer."
        ) from exc

    def _on_stream_event(self, t: RunTry, stream: Any) -> None:
        self._note(t, stream.task_id, stream.message_id, stream.conversation_id)

    def _deferred_kwargs(self, t: RunTry) -> dict[str, Any]:
        known = getattr(self, "_known", {})
        return {**super()._deferred_kwargs(t), "mode": self._mode, "message_id": known.get("message_id"),
                "conversation_id": known.get("conversation_id")}

    # --- answers -------------------------------------------------------------------------------

    def _finish_message(self, t: RunTry, message: Message | None) -> Any:
        """A chat, agent or completion answer: from the stream, or as ``GET /messages`` shows it."""
        known = getattr(self, "_known", {})
        message_id = message.id if message is not None else known.get("message_id", "")
        if message is not None and message.status == "error":
            t.memory.delivered()
            raise AirflowException(f"Dify message {message_id} failed: {message.error or 'no error text from Dify'}")
        stream = self._stream if message is None else None
        detail: dict[str, Any] = {"status": "succeeded"}
        if stream is not None:
            answer = stream.answer
            detail["retriever_resources"] = _citations(stream.retriever_resources)
        else:
            assert message is not None
            answer = message.answer
            detail["retriever_resources"] = _citations(message.retriever_resources)
        snapshot = Snapshot(Verdict.SUCCESS, Reason.SUCCEEDED, message_id,
                            f"Dify {self._mode} app answered message {message_id}", "succeeded", detail)
        return self._deliver(t.context, t.memory, snapshot, answer)

    def _finish(self, context: Context, memory: RunMemory, snapshot: Snapshot, **extra: Any) -> Any:
        """A chatflow's run ended: its answer from the stream, else from ``GET /messages``."""
        stream = self._stream
        detail = dict(snapshot.detail)
        answer = ""
        if snapshot.verdict is Verdict.SUCCESS:
            if stream is not None and stream.usage is not None:
                answer = stream.answer
                detail["retriever_resources"] = _citations(stream.retriever_resources)
            else:
                answer, resources = self._read_answer(extra)
                detail["retriever_resources"] = resources
        return self._deliver(context, memory, Snapshot(snapshot.verdict, snapshot.reason, snapshot.run_id,
                                                       snapshot.message, snapshot.status, detail), answer)

    def _read_answer(self, extra: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        conversation_id, message_id = extra.get("conversation_id"), extra.get("message_id")
        user = extra.get("user") or self.user
        if not (conversation_id and message_id and user):
            raise AirflowException("the chatflow run ended but its message is unknown, so its answer cannot be read")
        with self._client() as client:
            message = find_message(client, conversation_id, user, message_id=message_id, query="", since=None)
        if message is None:
            raise AirflowException(f"the chatflow run ended but message {message_id} is not in GET /messages of "
                                   f"conversation {conversation_id}")
        return message.answer, _citations(message.retriever_resources)

    def _deliver(self, context: Context, memory: RunMemory, snapshot: Snapshot, answer: str) -> Any:
        ti = context["ti"]
        for key in RESULT_KEYS:
            if snapshot.detail.get(key) is not None:  # Airflow 3.0 refuses a None XCom
                ti.xcom_push(key=key, value=snapshot.detail[key])
        self._report_usage(context, memory, snapshot)
        conclude(snapshot, self.log)
        memory.delivered()
        return answer

    def _send_stop(self, client: DifyClient, task_id: str, user: str | None) -> None:
        if (self._mode or self._resumed_mode()) == COMPLETION:
            client.stop_completion_message(task_id, user)
        else:
            client.stop_chat_message(task_id, user)

    def _resumed_mode(self) -> str | None:
        """The mode an earlier try recorded (a task resumed, or a retry stopping its run)."""
        resumed = getattr(self, "_resumed", None)
        attempt = getattr(self, "_try", None)
        memory = resumed[0] if resumed is not None else attempt.memory if attempt is not None else None
        return memory.get().get("mode") if memory is not None else None

    def _resume_extra(self, extra: dict[str, Any]) -> None:
        self._mode = extra.get("mode")

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         dify_task_id: str | None = None, user: str | None = None, **extra: Any) -> Any:
        self._mode = extra.get("mode")
        return super().execute_complete(context, event, dify_task_id, user, **extra)


def _citations(resources: Any) -> list[dict[str, Any]]:
    """``retriever_resources`` as JSON for XCom, from a stream or a message alike."""
    return [r.model_dump(mode="json") for r in resources or []]
