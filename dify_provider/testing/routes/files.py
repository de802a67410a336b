"""Files: ``POST /files/upload`` (multipart, one ``file`` part and a ``user`` field).

The answer is Dify's upload record, minus the ``reference`` key 1.13.2 does not send (checked
against the real server); a missing part, a second file or a nameless one get Dify's distinct
400 codes. The record is kept in ``EmulatorState.files`` (cleared by ``reset()``).
"""

from __future__ import annotations

import mimetypes
import time
import uuid

from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from dify_provider.testing.errors import DifyError
from dify_provider.testing.routes._core import Ctx, route
from dify_provider.testing.runs import end_user_id
from dify_provider.testing.state import EmulatorState


async def upload_file(ctx: Ctx) -> Response:
    async with ctx.request.form() as form:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise DifyError(400, "no_file_uploaded", "Please upload your file.")
        if len(uploads) > 1:
            raise DifyError(400, "too_many_files", "Only one file is allowed.")
        if not upload.filename:
            raise DifyError(400, "filename_not_exists_error", "The specified filename does not exist.")
        user = str(form.get("user") or "DEFAULT-USER")
        content = await upload.read()
    name = upload.filename
    file_id = str(uuid.uuid4())
    meta = {  # no "reference" key on 1.13.2 (checked against the real server)
        "id": file_id,
        "name": name,
        "size": len(content),
        "extension": name.rsplit(".", 1)[-1].lower() if "." in name else "",
        "mime_type": upload.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream",
        "created_by": end_user_id(ctx.app, user),
        "created_at": int(time.time()),
        "preview_url": None,
        "source_url": f"{ctx.request.base_url}files/{file_id}/file-preview?sign=emulator",
        "original_url": None,
        "user_id": None,
        "tenant_id": ctx.app.app_id,
        "conversation_id": None,
        "file_key": None,
    }
    ctx.state.files[file_id] = meta
    return JSONResponse(meta, status_code=201)


def routes(state: EmulatorState) -> list[BaseRoute]:
    return [route(state, "POST", "/files/upload", upload_file)]
