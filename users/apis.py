from django.contrib.auth import authenticate
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import NOT_FOUND, UNAUTHENTICATED, error
from config.parsers import SafeJSONParser
from fitting.errors import ServiceError, ValidationFailed
from fitting.services import photo_delete, user_delete
from users.selectors import photo_get, photo_list
from users.services import photo_create


class InvalidCredentialsError(ServiceError):
    code = "INVALID_CREDENTIALS"
    status = 400
    default_message = _("Unable to log in with the given username and password.")


@extend_schema_serializer(component_name="Photo")
class PhotoOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    createdAt = serializers.DateTimeField(source="created_at")

    def get_url(self, photo) -> str:
        return self.context["request"].build_absolute_uri(photo.image.url)


class TokenApi(APIView):
    """Exchange a username and password for the user's API token."""

    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [SafeJSONParser, FormParser]

    @extend_schema_serializer(component_name="TokenRequest")
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    @extend_schema_serializer(component_name="Token")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: error("Bad credentials or body.", "INVALID_CREDENTIALS", "VALIDATION_ERROR"),
        },
    )
    def post(self, request):
        from rest_framework.authtoken.models import Token

        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise InvalidCredentialsError()
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class PhotoListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

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
                "IMAGE_INVALID",
                "IMAGE_TOO_LARGE",
                "IMAGE_TOO_MANY_PIXELS",
                "VALIDATION_ERROR",
            ),
            401: UNAUTHENTICATED,
        },
    )
    def post(self, request):
        upload = request.FILES.get("image")
        if upload is None:
            raise ValidationFailed(_("Send the photo as the multipart field 'image'."), field="image")
        photo = photo_create(owner=request.user, upload=upload)
        return Response(PhotoOutputSerializer(photo, context={"request": request}).data, status=201)


class PhotoDetailApi(APIView):
    @extend_schema(
        responses={
            204: None,
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: error("A job using this photo is still processing.", "PHOTO_IN_USE"),
        }
    )
    def delete(self, request, photo_id):
        """Delete the photo and its file. Finished jobs that used it stay, without it."""
        photo = photo_get(owner=request.user, photo_id=photo_id)
        if photo is None:
            raise NotFound()
        photo_delete(photo=photo)
        return Response(status=204)


class MeApi(APIView):
    @extend_schema(operation_id="users_me_delete", responses={204: None, 401: UNAUTHENTICATED})
    def delete(self, request):
        """Delete the account with every photo, job, result image, token and session of it."""
        user_delete(user=request.user)
        request.session.flush()  # and a browser's session cookie is dropped
        return Response(status=204)
