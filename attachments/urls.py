"""Attachment REST routes under /api/."""

from django.urls import path

from attachments import api

urlpatterns = [
    path("rooms/<slug:slug>/uploads/", api.UploadView.as_view(), name="room-uploads"),
    path("attachments/file/<str:token>/", api.AttachmentFileView.as_view(), name="attachment-file"),
    path("attachments/<int:pk>/", api.AttachmentDetailView.as_view(), name="attachment-detail"),
]
