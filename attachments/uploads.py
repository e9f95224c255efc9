"""Django upload handlers for attachments: stop reading a file at the size limit; spill to disk early."""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler, StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest

# The multipart envelope around the file (boundaries, headers, a name): allowed on top of the file limit,
# here and in nginx's client_max_body_size for the upload route (deploy/nginx).
MULTIPART_OVERHEAD = 64 * 1024


class SizeLimitUploadHandler(FileUploadHandler):
    """Passes chunks on until a file passes ``limit`` bytes, then stops the parse (``exceeded`` says so).

    First in the handler list, so the temporary-file handler after it never writes past the limit.
    """

    def __init__(self, request: HttpRequest | None = None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (a temporary file) makes the file


def attachment_upload_handlers(request: HttpRequest, *, limit: int) -> SizeLimitUploadHandler:
    """Put the size limit and the temporary-file handler on ``request`` (before its body is parsed)."""
    limiter = SizeLimitUploadHandler(request, limit=limit)
    request.upload_handlers = [limiter, TemporaryFileUploadHandler(request)]
    return limiter
