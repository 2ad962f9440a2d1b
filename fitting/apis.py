from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from core.errors import ErrorCode, ValidationFailed, job_error_message
from core.media import media_url
from core.openapi import NOT_FOUND, UNAUTHENTICATED, error
from fitting.models import STEP_ORDER, Category, ImageStep, Status
from fitting.selectors import fitting_get, fitting_list, item_list
from fitting.services import RequestedItem, fitting_delete, fitting_start, photo_delete, user_delete
from users.selectors import photo_get


@extend_schema_serializer(component_name="Item")
class ItemOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    category = serializers.CharField()
    imageUrl = serializers.SerializerMethodField()

    def get_imageUrl(self, item) -> str:
        return media_url(item.image, self.context["request"])


class ItemListApi(APIView):
    @extend_schema_serializer(component_name="ItemFilter")
    class FilterSerializer(serializers.Serializer):
        category = serializers.ChoiceField(choices=Category.choices, required=False)

    @extend_schema(
        parameters=[FilterSerializer],
        responses={
            200: ItemOutputSerializer(many=True),
            400: error("Unknown category.", ErrorCode.VALIDATION_ERROR),
            401: UNAUTHENTICATED,
        },
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        items = item_list(**filters.validated_data)
        return Response(ItemOutputSerializer(items, many=True, context={"request": request}).data)


@extend_schema_serializer(component_name="Job")
class JobOutputSerializer(serializers.Serializer):
    """The job as clients see it; also the payload of each event of the event stream."""

    jobId = serializers.UUIDField(source="id")
    status = serializers.CharField()
    currentStep = serializers.CharField(source="current_step", allow_null=True)
    failedStep = serializers.CharField(source="failed_step", allow_null=True)
    llmMessage = serializers.CharField(source="llm_message", allow_null=True)
    cached = serializers.BooleanField()
    resultImageUrl = serializers.SerializerMethodField()
    items = serializers.SerializerMethodField()
    steps = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)

    def _url(self, image) -> str:
        return media_url(image.image, self.context.get("request"))

    def _images(self, job) -> dict:
        return {image.step: image for image in job.images.all()}

    def get_resultImageUrl(self, job) -> str | None:
        final = self._images(job).get(ImageStep.FINAL)
        return self._url(final) if final else None

    def get_items(self, job) -> list[dict]:
        return [{"itemId": i.item_id, "category": i.category, "order": i.order} for i in job.items.all()]

    def get_steps(self, job) -> list[dict]:
        produced = self._images(job)
        steps = []
        for job_item in sorted(job.items.all(), key=lambda i: STEP_ORDER.index(i.category)):
            image = produced.get(job_item.category)
            if image:
                state = "completed"
            elif job.failed_step == job_item.category:
                state = "failed"
            elif job.current_step == job_item.category and job.status == Status.PROCESSING:
                state = "processing"
            else:
                state = "pending"
            steps.append(
                {"category": job_item.category, "status": state, "imageUrl": self._url(image) if image else None}
            )
        return steps

    def get_error(self, job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job_error_message(job.error_code)}


class FittingStartThrottle(UserRateThrottle):
    """Per-user rate of starting jobs (FITTING_START_RATE); 429 THROTTLED with Retry-After."""

    scope = "fitting_start"

    def get_rate(self) -> str:
        return settings.FITTING_START_RATE


class FittingListCreateApi(APIView):
    @extend_schema_serializer(component_name="Fitting")  # FittingRequest in the schema
    class InputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="FittingItem")  # FittingItemRequest
        class ItemSerializer(serializers.Serializer):
            itemId = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
            category = serializers.CharField(max_length=50)
            imageUrl = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=2000)

        userPhotoUrl = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=2000)
        items = ItemSerializer(many=True, required=False, allow_empty=True, max_length=50)

    @extend_schema_serializer(component_name="FittingAccepted")
    class CreatedSerializer(serializers.Serializer):
        """The same body for a replayed Idempotency-Key: the job's status when it was accepted."""

        jobId = serializers.UUIDField(source="id")
        status = serializers.SerializerMethodField()
        createdAt = serializers.DateTimeField(source="created_at")

        def get_status(self, job) -> str:
            return Status.COMPLETED if job.cached else Status.PROCESSING

    def get_throttles(self):
        return [FittingStartThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        operation_id="virtual_fitting_list",
        parameters=[OpenApiParameter("page", int, description="1-based page number")],
        responses={
            200: inline_serializer(
                "JobPage",
                {
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": JobOutputSerializer(many=True),
                },
            ),
            401: UNAUTHENTICATED,
            404: error("No such page.", ErrorCode.NOT_FOUND),
        },
    )
    def get(self, request):
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(fitting_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(JobOutputSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Same key + same body within 24 h returns the same job.",
            )
        ],
        responses={
            202: CreatedSerializer,
            400: error(
                "The request is not valid (checked in this order).",
                ErrorCode.PHOTO_REQUIRED,
                ErrorCode.INSUFFICIENT_ITEMS,
                ErrorCode.TOO_MANY_ITEMS,
                ErrorCode.DUPLICATE_CATEGORY,
                ErrorCode.INVALID_CATEGORY,
                ErrorCode.INVALID_ITEM_ID,
                ErrorCode.VALIDATION_ERROR,
            ),
            401: UNAUTHENTICATED,
            422: error("The Idempotency-Key was used with another body.", ErrorCode.IDEMPOTENCY_KEY_REUSED),
            429: error("Too many jobs started; see Retry-After.", ErrorCode.THROTTLED),
        },
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 255):
            raise ValidationFailed(_("Idempotency-Key must be 1 to 255 characters."), field="Idempotency-Key")
        job, replayed = fitting_start(
            user=request.user,
            photo_url=data.validated_data.get("userPhotoUrl"),
            items=[
                RequestedItem(item_id=i["itemId"], category=i["category"], image_url=i.get("imageUrl"))
                for i in data.validated_data.get("items", [])
            ],
            idempotency_key=key,
        )
        headers = {"Location": reverse("fitting-detail", kwargs={"job_id": job.id})}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(self.CreatedSerializer(job).data, status=202, headers=headers)


class FittingDetailApi(APIView):
    @extend_schema(responses={200: JobOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND})
    def get(self, request, job_id):
        job = fitting_get(user=request.user, job_id=job_id)
        if job is None:
            raise NotFound()
        return Response(JobOutputSerializer(job, context={"request": request}).data)

    @extend_schema(responses={204: None, 401: UNAUTHENTICATED, 404: NOT_FOUND})
    def delete(self, request, job_id):
        """Delete the job, even while it runs, with its images (a file another job shares stays)."""
        job = fitting_get(user=request.user, job_id=job_id)
        if job is None:
            raise NotFound()
        fitting_delete(job=job)
        return Response(status=204)


# --- erasure of photos and of the account: the jobs that used them go too (or keep working) --
class PhotoDetailApi(APIView):
    @extend_schema(
        responses={
            204: None,
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: error("A job using this photo is still processing.", ErrorCode.PHOTO_IN_USE),
        }
    )
    def delete(self, request, photo_id):
        """Delete the photo and its file. Finished jobs that used it stay, without it."""
        photo = photo_get(owner=request.user, photo_id=photo_id)
        if photo is None:
            raise NotFound()
        photo_delete(photo=photo)
        return Response(status=204)


class AccountApi(APIView):
    @extend_schema(operation_id="users_me_delete", responses={204: None, 401: UNAUTHENTICATED})
    def delete(self, request):
        """Delete the account with every photo, job, result image, token and session of it."""
        user_delete(user=request.user)
        request.session.flush()  # and a browser's session cookie is dropped
        return Response(status=204)
