"""The error responses of the API, for the OpenAPI schema."""

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
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


class ApiTokenScheme(KnoxTokenScheme):
    """knox's tokens under the scheme name DRF's tokens had, so generated clients keep it."""

    name = "tokenAuth"
    priority = 1  # over drf-spectacular's own knox extension

    def get_security_definition(self, auto_schema):
        definition = super().get_security_definition(auto_schema)
        definition["description"] = (
            '"Authorization: Token <token>", the token from POST /api/auth/token. It works until its '
            "expiry (API_TOKEN_TTL after the login) or until POST /api/auth/logout (this token) or "
            "/api/auth/logout-all (every token of the user) revokes it."
        )
        return definition
