"""The error responses of the API, for the OpenAPI schema."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from core.errors import ErrorCode


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=ErrorCode.choices, help_text="A stable code, e.g. PHOTO_REQUIRED.")
    message = serializers.CharField(help_text="Human readable, in the request's language (ko or en).")
    field = serializers.CharField(allow_null=True, help_text="Where in the request, if anywhere.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def error(description: str, *codes: ErrorCode) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=f"{description} Codes: {', '.join(codes)}.")


UNAUTHENTICATED = error("No or bad credentials.", ErrorCode.NOT_AUTHENTICATED)
NOT_FOUND = error("Not yours, or does not exist.", ErrorCode.NOT_FOUND)
