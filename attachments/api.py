"""REST routes of attachments: upload into a room, fresh links for one attachment, the signed file view."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core import signing
from django.http import FileResponse, Http404, HttpRequest
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from attachments import services
from attachments.links import attachment_json, disposition, file_token_read, served_type
from attachments.models import Attachment, attachments_storage
from attachments.uploads import MULTIPART_OVERHEAD, attachment_upload_handlers
from chat import selectors
from chat.api.views import ChatAPIView
from chatproject.errors import json_error

logger = logging.getLogger(__name__)


class UploadView(ChatAPIView):
    """``POST /api/rooms/<slug>/uploads/`` (multipart, field ``file``): id, name, size and type of the upload."""

    parser_classes = [MultiPartParser]

    def dispatch(self, request: HttpRequest, *args, **kwargs):
        # Before anything reads the body (the CSRF check of session auth does): the size limit first,
        # then a temporary file, so the upload is never held whole in memory.
        self.limiter = attachment_upload_handlers(request, limit=settings.ATTACHMENTS_MAX_FILE_BYTES)
        return super().dispatch(request, *args, **kwargs)

    def post(self, request: Request, slug: str) -> Response:
        room = self.room(request, slug)
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.ATTACHMENTS_MAX_FILE_BYTES + MULTIPART_OVERHEAD:
            raise services.too_large_error()
        upload = request.FILES.get("file")
        if self.limiter.exceeded:
            raise services.too_large_error()
        if upload is None:
            return Response(
                {"detail": 'send the file as multipart/form-data in a field named "file"', "code": "invalid"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            attachment = services.upload_create(room=room, owner=request.user, file=upload, name=upload.name)
        finally:
            upload.close()  # the temporary file goes now, not when the request is collected
        body = {"id": attachment.pk, "name": attachment.name, "size": attachment.size, "type": attachment.content_type}
        return Response(body, status=status.HTTP_201_CREATED)


class AttachmentDetailView(ChatAPIView):
    """``GET /api/attachments/<id>/``: the attachment with fresh signed URLs, for readers of its room."""

    def get(self, request: Request, pk: int) -> Response:
        attachment = Attachment.objects.select_related("room").filter(pk=pk).first()
        if attachment is None:
            return Response({"detail": f"no attachment {pk}", "code": "not-found"}, status=404)
        if attachment.message_id is None and attachment.owner_id != request.user.pk:
            return Response({"detail": f"no attachment {pk}", "code": "not-found"}, status=404)
        selectors.room_visible_get(slug=attachment.room.slug, user=request.user)  # NotFound for non-members
        return Response(attachment_json(attachment))


@method_decorator(login_not_required, name="dispatch")
class AttachmentFileView(View):
    """``GET /api/attachments/file/<token>/``: a file-system attachment, for as long as its signed link lives.

    The signature is the permission (like an S3 presigned URL): it was issued to a reader of the room
    moments ago, expires after ``ATTACHMENTS_URL_TTL`` seconds, and names one file.
    """

    def get(self, request: HttpRequest, token: str):
        if settings.ATTACHMENTS_STORAGE != "filesystem":
            raise Http404
        try:
            link = file_token_read(token)
        except signing.SignatureExpired:
            return json_error(403, "this link expired; ask for a new one", code="link-expired")
        except signing.BadSignature:
            return json_error(403, "this link is not valid", code="link-invalid")
        storage = attachments_storage()
        try:
            handle = storage.open(link["n"], "rb")
        except FileNotFoundError:
            return json_error(404, "this file was deleted", code="not-found")
        response = FileResponse(handle, content_type=served_type(link["t"]))
        response["Content-Disposition"] = disposition(link["t"], link["d"])
        response["X-Content-Type-Options"] = "nosniff"
        # Even a download opened directly runs nothing: no scripts, no plugins, its own origin.
        response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
        response["Cache-Control"] = f"private, max-age={settings.ATTACHMENTS_URL_TTL}"
        response["Cross-Origin-Resource-Policy"] = "cross-origin"  # the page may be on another origin
        return response
