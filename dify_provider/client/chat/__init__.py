"""The chat part of the Dify service API: chat, agent-chat, advanced-chat (chatflow) and
completion apps. ``DifyClient`` / ``AsyncDifyClient`` carry its methods (``chat_message``,
``completion_message``, ``list_messages``, ...); the names are exported from
:mod:`dify_provider.client`.

Importing this package loads nothing: operators import :mod:`._checks` at DAG parse time.
"""
