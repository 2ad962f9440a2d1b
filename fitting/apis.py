from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ErrorCode, ValidationFailed
from core.openapi import NOT_FOUND, UNAUTHENTICATED, error
from core.throttling import AtomicUserRateThrottle
from fitting.models import Category, Status, WebhookEvent
from fitting.selectors import fitting_get, fitting_list, item_list
from fitting.serializers import ItemOutputSerializer, JobOutputSerializer, RatingSerializer
from fitting.services.erasure import fitting_delete, photo_delete, user_delete
from fitting.services.lifecycle import fitting_cancel
from fitting.services.rating import fitting_rate, fitting_rating_delete
from fitting.services.start import RequestedItem, WebhookRequest, fitting_start
from fitting.webhooks import webhook_secret_get, webhook_secret_rotate
from users.selectors import photo_get


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


WEBHOOK_DESCRIPTION = """Start a job: 202 with its id; follow it with GET, or its event stream, or a webhook.

**Webhooks.** With `webhookUrl`, each event in `webhookEvents` (default: `fitting.completed`,
`fitting.failed`, `fitting.timeout`, `fitting.canceled`; also `fitting.step_finished`, and
`fitting.rated` when the owner rates the result, changes or removes the rating) is
POSTed there as JSON `{"type": "<event>", "timestamp": "<when it happened>", "data": <the job,
as GET /api/virtual-fitting/{jobId} showed it then>}`, with the Standard Webhooks headers
`webhook-id` (`msg_…`, the same on every retry: deduplicate on it), `webhook-timestamp` (Unix
seconds of the attempt) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
`<webhook-id>.<webhook-timestamp>.<body>` keyed with your secret, see
`GET /api/webhooks/secret`). Answer 2xx to acknowledge. Network errors, timeouts (3 s to
connect, 10 s in all), 408, 429 and 5xx are retried with exponential backoff for 24 h; any
other answer, including a redirect (never followed), ends the delivery. The URL must be
http(s) and resolve to public addresses only, when posted and at each delivery."""


class StrictIntegerField(serializers.IntegerField):
    """An integer: a JSON number without a fraction, or its digits as a string; never a boolean."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class FittingStartThrottle(AtomicUserRateThrottle):
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
        webhookUrl = serializers.CharField(
            required=False,
            allow_null=True,
            max_length=2000,
            help_text=_lazy(
                "An http(s) URL of a public address: each event of the job is POSTed there, signed the "
                "Standard Webhooks way with your secret (GET /api/webhooks/secret)."
            ),
        )
        webhookEvents = serializers.ListField(
            child=serializers.ChoiceField(choices=WebhookEvent.choices),
            required=False,
            allow_empty=False,
            max_length=len(WebhookEvent.choices),
            help_text=_lazy("The events to POST (default: the terminal ones). Only with webhookUrl."),
        )

        numSamples = StrictIntegerField(
            required=False,
            min_value=1,
            max_value=4,
            help_text=_lazy(
                "Candidates per step (1 to 4, and at most FITTING_MAX_SAMPLES; default 1): the best of them "
                "goes on, and the last step's are all kept (`candidates`, best first). Each is an engine call "
                "with Gemini; the local engine makes one whatever is asked."
            ),
        )
        seed = StrictIntegerField(
            required=False,
            allow_null=True,
            min_value=0,
            max_value=2**31 - 1,
            help_text=_lazy(
                "Makes the result repeatable where the engine takes a seed: candidate k is made with seed + k. "
                "Part of the result-cache key."
            ),
        )

        def validate_numSamples(self, value):
            if value > settings.FITTING_MAX_SAMPLES:
                raise ValidationFailed(
                    _("numSamples is at most %(max)d.") % {"max": settings.FITTING_MAX_SAMPLES}, field="numSamples"
                )
            return value

        def validate(self, data):
            if data.get("webhookEvents") and not data.get("webhookUrl"):
                raise ValidationFailed(_("webhookEvents needs a webhookUrl."), field="webhookEvents")
            return data

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
        description=WEBHOOK_DESCRIPTION,
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
                ErrorCode.CATEGORY_CONFLICT,
                ErrorCode.INVALID_ITEM_ID,
                ErrorCode.INVALID_WEBHOOK_URL,
                ErrorCode.VALIDATION_ERROR,
            ),
            401: UNAUTHENTICATED,
            422: error("The Idempotency-Key was used with another body.", ErrorCode.IDEMPOTENCY_KEY_REUSED),
            429: error(
                "Too many jobs started (THROTTLED), or the daily quota of jobs is used up (QUOTA_EXCEEDED, "
                "with the time it resets); see Retry-After.",
                ErrorCode.THROTTLED,
                ErrorCode.QUOTA_EXCEEDED,
            ),
        },
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 255):
            raise ValidationFailed(_("Idempotency-Key must be 1 to 255 characters."), field="Idempotency-Key")
        webhook = None
        if data.validated_data.get("webhookUrl"):
            webhook = WebhookRequest(
                url=data.validated_data["webhookUrl"].strip(),
                events=data.validated_data.get("webhookEvents"),
                origin=request.build_absolute_uri("/").rstrip("/"),
            )
        job, replayed = fitting_start(
            user=request.user,
            photo_url=data.validated_data.get("userPhotoUrl"),
            items=[
                RequestedItem(item_id=i["itemId"], category=i["category"], image_url=i.get("imageUrl"))
                for i in data.validated_data.get("items", [])
            ],
            idempotency_key=key,
            webhook=webhook,
            num_samples=data.validated_data.get("numSamples", 1),
            seed=data.validated_data.get("seed"),
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


class FittingCancelApi(APIView):
    @extend_schema(
        operation_id="api_virtual_fitting_cancel",
        request=None,
        responses={
            202: JobOutputSerializer,
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: error("The job has already finished (completed, failed or timed out).", ErrorCode.JOB_FINISHED),
        },
    )
    def post(self, request, job_id):
        """Cancel a processing job: it ends as `canceled` and its worker makes no further engine call.

        Cancelling a canceled job answers 202 again with it.
        """
        job = fitting_get(user=request.user, job_id=job_id)
        if job is None:
            raise NotFound()
        fitting_cancel(job=job)
        job = fitting_get(user=request.user, job_id=job_id)
        if job is None:  # deleted meanwhile
            raise NotFound()
        return Response(JobOutputSerializer(job, context={"request": request}).data, status=202)


class FittingRatingApi(APIView):
    @extend_schema(
        operation_id="api_virtual_fitting_rating_update",
        request=RatingSerializer,
        responses={
            200: RatingSerializer,
            400: error(
                "A score outside 1–5, an unknown reason, a comment over 500 characters.", ErrorCode.VALIDATION_ERROR
            ),
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: error("The job is not completed: only a completed job can be rated.", ErrorCode.JOB_NOT_COMPLETED),
        },
    )
    def put(self, request, job_id):
        """Rate the result of a completed job of yours (1–5, with reasons and a comment).

        One rating per job: a second PUT replaces it. Announced as `fitting.rated` to a webhook
        subscribed to it.
        """
        job = fitting_get(user=request.user, job_id=job_id)
        if job is None:
            raise NotFound()
        data = RatingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rating = fitting_rate(job=job, **data.validated_data)
        if rating is None:  # deleted meanwhile
            raise NotFound()
        return Response(RatingSerializer(rating).data)

    @extend_schema(
        operation_id="api_virtual_fitting_rating_destroy",
        responses={204: None, 401: UNAUTHENTICATED, 404: NOT_FOUND},
    )
    def delete(self, request, job_id):
        """Remove your rating of the job (204 also when it had none)."""
        job = fitting_get(user=request.user, job_id=job_id)
        if job is None:
            raise NotFound()
        fitting_rating_delete(job=job)
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


# --- webhooks: the signing secret --------------------------------------------------------------
@extend_schema_serializer(component_name="WebhookSecret")
class WebhookSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(
        help_text=_lazy(
            "whsec_ + base64 of the key. Verify each delivery with it: webhook-signature is v1, + base64 "
            "HMAC-SHA256 of webhook-id.webhook-timestamp.body (Standard Webhooks)."
        )
    )


class WebhookSecretApi(APIView):
    @extend_schema(operation_id="webhooks_secret_get", responses={200: WebhookSecretSerializer, 401: UNAUTHENTICATED})
    def get(self, request):
        """Your webhook signing secret (made on first use)."""
        return Response({"secret": webhook_secret_get(user=request.user)})


class WebhookSecretRotateApi(APIView):
    @extend_schema(
        operation_id="webhooks_secret_rotate",
        request=None,
        responses={200: WebhookSecretSerializer, 401: UNAUTHENTICATED},
    )
    def post(self, request):
        """A new webhook signing secret; deliveries are signed with it from now on, retries included."""
        return Response({"secret": webhook_secret_rotate(user=request.user)})
