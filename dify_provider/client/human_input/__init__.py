"""Human-input forms: what a paused run waits for, and how an API client answers it.

``models`` holds the shapes, ``_api`` the calls (the service route of Dify >= 1.14 and the web
route of 1.13), ``sync``/``async_`` the client methods over the one shared transport.
"""
