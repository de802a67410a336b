"""The emulator's ``/v1`` service API, one module per API area, as Dify's ``service_api`` has them.

Where the route for an endpoint lives:

- ``GET /``, ``/info``, ``/parameters``, ``/site``, ``/meta``: :mod:`.app_info`
- ``POST /workflows/run``, ``POST /workflows/{workflow_id}/run``, ``GET /workflows/run/{id}``,
  ``POST /workflows/tasks/{task_id}/stop``, ``GET /workflows/logs``: :mod:`.workflows`
- ``POST /chat-messages``, ``POST /chat-messages/{task_id}/stop``, ``POST /completion-messages``,
  ``POST /completion-messages/{task_id}/stop``: :mod:`.chat` (message lifecycle:
  :mod:`~dify_provider.testing.chat_state`)
- ``GET /messages``, ``GET /conversations``: :mod:`.conversations`
- ``GET /workflow/{workflow_run_id}/events`` (Dify 1.14): :mod:`.events`
- ``GET`` and ``POST /form/human_input/{form_token}`` (Dify 1.14): :mod:`.human_input` (the forms
  themselves, several per run: :mod:`~dify_provider.testing.forms`,
  :mod:`~dify_provider.testing.form_state`)
- ``POST /files/upload``: :mod:`.files`

What every route shares (auth, scripted faults, the request context, the 404 page) is in
:mod:`._core`; :mod:`dify_provider.testing.app` mounts the areas' ``routes(state)`` under ``/v1``.
A new area is a module here with its handlers and a ``routes(state)`` built with
:func:`._core.route`, its route keys added to
:data:`~dify_provider.testing.registry.SERVICE_ENDPOINTS`, and one line in
:func:`~dify_provider.testing.app.service_routes`.

Outside ``/v1``: :mod:`.web` serves the web API's ``GET`` and ``POST /api/form/human_input/{form_token}``
(Dify 1.13.2 and later, no key), which :mod:`dify_provider.testing.app` mounts under ``/api``.
"""
