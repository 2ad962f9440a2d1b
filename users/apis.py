from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from knox import views as knox_views
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ErrorCode, InvalidCredentialsError, ValidationFailed
from core.media import media_url
from core.openapi import UNAUTHENTICATED, error
from core.parsers import SafeJSONParser
from core.throttling import AtomicUserRateThrottle
from users.selectors import photo_list
from users.services import photo_create, token_issue


@extend_schema_serializer(component_name="Photo")
class PhotoOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    createdAt = serializers.DateTimeField(source="created_at")

    def get_url(self, photo) -> str:
        return media_url(photo.image, self.context["request"])


@extend_schema_serializer(component_name="Credentials")  # CredentialsRequest in the schema
class CredentialsSerializer(AuthTokenSerializer):
    """A username and its password."""

    # DRF's serializer, but bad credentials are the project's INVALID_CREDENTIALS.

    def validate(self, attrs):
        # The Django request, not DRF's wrapper: axes (login throttling) marks a refused login
        # on it, and its middleware, which sees only that object, answers 429.
        request = self.context["request"]._request
        user = authenticate(request=request, username=attrs.get("username"), password=attrs.get("password"))
        if user is None:
            raise InvalidCredentialsError()
        attrs["user"] = user
        return attrs


class TokenApi(APIView):
    """Exchange a username and password for a new API token, valid until ``expiry``."""

    parser_classes = [SafeJSONParser, FormParser]
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="Token")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text='Send it as "Authorization: Token <token>". Shown only once.')
        expiry = serializers.DateTimeField(help_text="When the token stops working (API_TOKEN_TTL after the login).")

    @extend_schema(
        request=CredentialsSerializer,
        responses={
            200: OutputSerializer,
            400: error("Bad credentials or body.", ErrorCode.INVALID_CREDENTIALS, ErrorCode.VALIDATION_ERROR),
            429: error(
                "Too many failed logins: for this username from this address (LOGIN_FAILURE_LIMIT), "
                "on many usernames from this address (LOGIN_ADDRESS_USERNAME_LIMIT) or for this "
                "username from many addresses (LOGIN_USERNAME_FAILURE_LIMIT), within "
                "LOGIN_COOLOFF_MINUTES; every attempt is refused, the right password too, until "
                "Retry-After seconds have passed.",
                ErrorCode.THROTTLED,
            ),
        },
        parameters=[
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[429],
                description="Seconds to wait before trying again.",
            )
        ],
    )
    def post(self, request, *args, **kwargs):
        serializer = CredentialsSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        # A token exchange is a login: last_login, and the failures it clears (users.lockout).
        user_logged_in.send(sender=user.__class__, request=request._request, user=user)
        token, key = token_issue(user=user)
        return Response(self.OutputSerializer({"token": key, "expiry": token.expiry}).data)


# Only a token is logged out here: a browser session (the demo page, the admin) ends at /logout/.
TOKEN_UNAUTHENTICATED = error("No token, or one that is unknown, expired or revoked.", ErrorCode.NOT_AUTHENTICATED)


@extend_schema(
    request=None,
    responses={204: None, 401: TOKEN_UNAUTHENTICATED},
)
class LogoutApi(knox_views.LogoutView):
    """Revoke the API token this request carries; the user's other tokens keep working."""


@extend_schema(
    request=None,
    responses={204: None, 401: TOKEN_UNAUTHENTICATED},
)
class LogoutAllApi(knox_views.LogoutAllView):
    """Revoke every API token of the user this request's token belongs to (every device)."""


class PhotoUploadThrottle(AtomicUserRateThrottle):
    """Per-user rate of photo uploads (UPLOAD_RATE); 429 THROTTLED with Retry-After."""

    scope = "photo_upload"

    def get_rate(self) -> str:
        return settings.UPLOAD_RATE


class PhotoListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    def get_throttles(self):
        return [PhotoUploadThrottle()] if self.request.method == "POST" else []

    @extend_schema_serializer(component_name="PhotoUpload")
    class InputSerializer(serializers.Serializer):
        image = serializers.FileField(allow_empty_file=True)

    @extend_schema(responses={200: PhotoOutputSerializer(many=True), 401: UNAUTHENTICATED})
    def get(self, request):
        photos = photo_list(owner=request.user)
        return Response(PhotoOutputSerializer(photos, many=True, context={"request": request}).data)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: PhotoOutputSerializer,
            400: error(
                "Not an accepted image, or over a limit.",
                ErrorCode.IMAGE_INVALID,
                ErrorCode.IMAGE_TOO_LARGE,
                ErrorCode.IMAGE_TOO_MANY_PIXELS,
                ErrorCode.IMAGE_ASPECT_RATIO,
                ErrorCode.VALIDATION_ERROR,
            ),
            401: UNAUTHENTICATED,
            429: error("Too many uploads, or too many photos kept.", ErrorCode.THROTTLED, ErrorCode.QUOTA_EXCEEDED),
            507: error("No room left to store the photo.", ErrorCode.STORAGE_FULL),
        },
    )
    def post(self, request):
        upload = request.FILES.get("image")
        if upload is None:
            raise ValidationFailed(_("Send the photo as the multipart field 'image'."), field="image")
        photo = photo_create(owner=request.user, upload=upload)
        return Response(PhotoOutputSerializer(photo, context={"request": request}).data, status=201)
