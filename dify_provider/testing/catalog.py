"""The apps an emulator hosts when the test names none (:func:`default_apps`), and the nodes a
chatflow runs when its scenario names none.

Apart from :mod:`~dify_provider.testing.models` so the models stay the vocabulary and this the
one place to look up what ``echo``, ``chat`` or ``approval`` do.
"""

from __future__ import annotations

from dify_provider.testing.models import EmulatedApp, InputField, NodeSpec, Scenario

#: Chunks of the chat apps' deterministic answers (``Echo: hi (turn 1)``).
ECHO_ANSWER = ("Echo: ", "{sys.query}", " (turn {sys.dialogue_count})")
_LLM = NodeSpec(id="llm", type="llm", title="LLM", text_chunks=tuple((chunk, ("llm", "text")) for chunk in ECHO_ANSWER))
#: What a chatflow runs when its scenario names no nodes: start, an LLM streaming the answer, answer.
CHATFLOW_NODES = (
    NodeSpec(id="start", type="start", title="Start"),
    _LLM,
    NodeSpec(id="answer", type="answer", title="Answer"),
)


def chat_apps() -> list[EmulatedApp]:
    """One app per chat mode: ``chat`` (a chatflow: start, knowledge retrieval, LLM, answer),
    ``basic-chat``, ``agent`` and ``completion``; answers and usage are functions of the request."""
    quick = Scenario(step_seconds=0.005, tokens_per_step=0)
    knowledge = NodeSpec(id="knowledge", type="knowledge-retrieval", title="Knowledge Retrieval")
    echo = "answering `Echo: <query> (turn <n>)`, citing one passage"
    return [
        EmulatedApp(name="chat", mode="advanced-chat", description=f"A chatflow {echo}.", retriever_resource=True,
                    inputs=(InputField(variable="name", label="Name", max_length=48),),
                    scenario=quick.model_copy(update={"nodes": (CHATFLOW_NODES[0], knowledge, *CHATFLOW_NODES[1:])})),
        EmulatedApp(name="basic-chat", mode="chat", description=f"A chatbot {echo}.", answer=ECHO_ANSWER,
                    retriever_resource=True, scenario=quick),
        EmulatedApp(name="agent", mode="agent-chat", description="An agent answering `Agent: <query> (turn <n>)`.",
                    answer=("Agent: ", *ECHO_ANSWER[1:]), scenario=quick),
        EmulatedApp(name="completion", mode="completion", description="Answers `Completion: <text>`.",
                    inputs=(InputField(variable="text", label="Text", required=True, max_length=256),),
                    answer=("Completion: ", "{text}"), scenario=quick),
    ]  # fmt: skip


def default_apps() -> list[EmulatedApp]:
    """``echo`` (the workhorse), the :func:`chat_apps`, ``slow`` (10 x 1 s, for watching a run by
    hand) and ``approval`` (pauses for human input)."""
    text = InputField(variable="text", label="Text", required=True, max_length=256)
    return [
        EmulatedApp(
            name="echo",
            description="Upper-cases `text`; outputs echo the inputs.",
            inputs=(text, InputField(variable="count", type="number", label="Count")),
        ),
        *chat_apps(),
        EmulatedApp(
            name="slow",
            description="Ten one-second steps.",
            inputs=(InputField(variable="text", label="Text"),),
            scenario=Scenario(steps=10, step_seconds=1.0),
        ),
        EmulatedApp(
            name="approval",
            description="Pauses at a human-input node until the form is submitted.",
            inputs=(InputField(variable="text", label="Text"),),
            scenario=Scenario(status="paused"),
        ),
    ]
