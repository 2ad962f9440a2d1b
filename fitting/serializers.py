"""The job and the catalogue item as clients see them: one shape for the API, the event
stream and the webhook payloads."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from core.media import media_url
from fitting.engines.identity import GENERATIVE_ENGINES
from fitting.errors import job_error_message
from fitting.models import RATING_COMMENT_MAX, RATING_SCORES, ImageStep, RatingReason, Status, WebhookEvent


@extend_schema_serializer(component_name="Item")
class ItemOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    category = serializers.CharField()
    imageUrl = serializers.SerializerMethodField()

    def get_imageUrl(self, item) -> str:
        return media_url(item.image, self.context["request"])


@extend_schema_serializer(component_name="JobStep")
class JobStepSerializer(serializers.Serializer):
    """One step of a job, as ``steps`` lists them (documentation: built by ``get_steps``)."""

    category = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "processing", "completed", "failed"])
    imageUrl = serializers.CharField(allow_null=True)
    cached = serializers.BooleanField(
        help_text="Made by an earlier job with the same photo, garments so far and engine."
    )
    attempts = serializers.IntegerField(
        help_text="Engine calls of the step: more than 1 when the quality checks sent it again "
        "(each asks for numSamples candidates)."
    )
    qualityPassed = serializers.BooleanField(
        allow_null=True,
        help_text="Whether the kept image passed the quality checks; null when not checked "
        "(false: FITTING_QUALITY_POLICY=accept_best kept the best of failed attempts).",
    )


@extend_schema_serializer(component_name="JobCandidate")
class JobCandidateSerializer(serializers.Serializer):
    """One of the job's candidates (numSamples): the last step's images of its kept call."""

    imageUrl = serializers.CharField()
    score = serializers.FloatField(
        allow_null=True,
        help_text="The quality checks' score (0 to 1, higher is better); null when not checked.",
    )


@extend_schema_serializer(component_name="JobEngine")
class JobEngineSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The engine: `local`, `gemini` or `vertex-tryon`.")
    model = serializers.CharField(
        help_text="The model that makes the images (`local-preview-1` for the local compositor)."
    )


@extend_schema_serializer(component_name="Rating")
class RatingSerializer(serializers.Serializer):
    """The owner's rating of a completed job: as PUT takes it, and as GET shows it (with its times)."""

    score = serializers.IntegerField(min_value=min(RATING_SCORES), max_value=max(RATING_SCORES))
    reasons = serializers.ListField(
        child=serializers.ChoiceField(choices=RatingReason.values),
        required=False,
        default=list,
        max_length=len(RatingReason.values) * 2,
        help_text="What was wrong, from a fixed list; each counted once.",
    )
    comment = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=RATING_COMMENT_MAX, trim_whitespace=True
    )
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)


@extend_schema_serializer(component_name="Job")
class JobOutputSerializer(serializers.Serializer):
    """The job as clients see it; also the payload of each event of the event stream."""

    jobId = serializers.UUIDField(source="id")
    status = serializers.ChoiceField(choices=Status.choices)
    currentStep = serializers.CharField(source="current_step", allow_null=True)
    failedStep = serializers.CharField(source="failed_step", allow_null=True)
    llmMessage = serializers.CharField(source="llm_message", allow_null=True)
    cached = serializers.BooleanField()
    aiGenerated = serializers.SerializerMethodField(
        help_text=(
            "True when the job's images (the result and the steps) are made by a generative AI model "
            "(engines `gemini` and `vertex-tryon`): label them as AI-generated. False for the local "
            "preview compositor, which pastes the catalogue photos onto the person photo."
        )
    )
    engine = serializers.SerializerMethodField(help_text="The engine and model the job is pinned to.")
    resultImageUrl = serializers.SerializerMethodField()
    candidates = serializers.SerializerMethodField(
        help_text=(
            "The result's candidates, best first (passed the quality checks, then score): "
            "`numSamples` of them at most, the first being `resultImageUrl`; empty until the job completes."
        )
    )
    numSamples = serializers.IntegerField(source="num_samples", help_text="Candidates asked for per step.")
    seed = serializers.IntegerField(allow_null=True, help_text="The seed the request gave; null when none.")
    items = serializers.SerializerMethodField()
    steps = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)
    webhookUrl = serializers.SerializerMethodField()
    webhookEvents = serializers.ListField(
        source="webhook_events", child=serializers.ChoiceField(choices=WebhookEvent.choices)
    )
    rating = serializers.SerializerMethodField(help_text="The owner's rating of the result; null when none.")

    @extend_schema_field(RatingSerializer(allow_null=True))
    def get_rating(self, job) -> dict | None:
        rating = getattr(job, "rating", None)  # the reverse one-to-one: AttributeError when there is none
        return RatingSerializer(rating).data if rating is not None else None

    def get_aiGenerated(self, job) -> bool:
        return job.engine in GENERATIVE_ENGINES

    @extend_schema_field(JobEngineSerializer)
    def get_engine(self, job) -> dict:
        return {"name": job.engine, "model": job.model}

    def get_webhookUrl(self, job) -> str | None:
        return job.webhook_url or None

    def _url(self, image) -> str:
        return media_url(image.image, self.context.get("request"))

    def _images(self, job) -> dict:
        return {image.step: image for image in job.images.all()}

    def get_resultImageUrl(self, job) -> str | None:
        final = self._images(job).get(ImageStep.FINAL)
        return self._url(final) if final else None

    @extend_schema_field(JobCandidateSerializer(many=True))
    def get_candidates(self, job) -> list[dict]:
        final = self._images(job).get(ImageStep.FINAL)
        if final is None:
            return []
        rows = getattr(job, "candidate_rows", None)  # prefetched (fitting.selectors.job_prefetches)
        if rows is None:
            rows = list(job.step_attempts.filter(candidate_rank__isnull=False).order_by("candidate_rank"))
        if not rows:  # made before numSamples, or its last step reused without candidates
            return [{"imageUrl": self._url(final), "score": None}]
        return [
            {
                # The first is the result: its URL as resultImageUrl shows it.
                "imageUrl": self._url(final) if row.candidate_rank == 0 else self._url(row),
                "score": (row.scores or {}).get("score"),
            }
            for row in rows
        ]

    def get_items(self, job) -> list[dict]:
        return [{"itemId": i.item_id, "category": i.category, "order": i.order} for i in job.step_items()]

    @extend_schema_field(JobStepSerializer(many=True))
    def get_steps(self, job) -> list[dict]:
        produced = self._images(job)
        steps = []
        for job_item in job.step_items():
            image = produced.get(job_item.category)
            if image:
                state = "completed"
            elif job.failed_step == job_item.category:
                state = "failed"
            elif job.current_step == job_item.category and job.status == Status.PROCESSING:
                state = "processing"
            else:
                state = "pending"
            step_metrics = job.step_metrics.get(job_item.category) or {}
            reused = bool(image) and bool(step_metrics.get("cached"))
            steps.append(
                {
                    "category": job_item.category,
                    "status": state,
                    "imageUrl": self._url(image) if image else None,
                    # Made by an earlier job with the same photo, garments so far and engine.
                    "cached": reused,
                    # The quality gate (issue 22): the engine calls the step took (a reused
                    # step: its source's), and whether the kept one passed the checks (null:
                    # not checked).
                    "attempts": step_metrics.get("attempts", 1 if image else 0),
                    "qualityPassed": step_metrics.get("quality_passed"),
                }
            )
        return steps

    def get_error(self, job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job_error_message(job.error_code)}
