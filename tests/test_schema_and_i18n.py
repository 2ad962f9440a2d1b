import pytest
import yaml


def test_openapi_schema_documents_the_error_codes(client, db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    post = schema["paths"]["/api/virtual-fitting"]["post"]
    assert set(post["responses"]) >= {"202", "400", "401", "422", "429"}
    for code in (
        "PHOTO_REQUIRED",
        "INSUFFICIENT_ITEMS",
        "TOO_MANY_ITEMS",
        "DUPLICATE_CATEGORY",
        "INVALID_CATEGORY",
        "CATEGORY_CONFLICT",
        "INVALID_ITEM_ID",
        "VALIDATION_ERROR",
    ):
        assert code in post["responses"]["400"]["description"]
    # Listed in the order they are checked.
    description = post["responses"]["400"]["description"]
    assert description.index("INVALID_CATEGORY") < description.index("CATEGORY_CONFLICT")
    assert description.index("CATEGORY_CONFLICT") < description.index("INVALID_ITEM_ID")
    assert post["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert "/api/virtual-fitting/{job_id}" in schema["paths"]
    assert "/api/users/me/photos" in schema["paths"]


def test_interactive_docs_are_served_without_a_cdn(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "cdn.jsdelivr" not in page and "unpkg.com" not in page


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (None, "아이템을 하나 이상 선택해 주세요."),
        ("ko", "아이템을 하나 이상 선택해 주세요."),
        ("en", "Pick at least one item."),
        ("en-US,en;q=0.9", "Pick at least one item."),
    ],
)
def test_error_messages_follow_accept_language(api, photo, language, expected):
    headers = {"HTTP_ACCEPT_LANGUAGE": language} if language else {}
    response = api.post(
        "/api/virtual-fitting", {"userPhotoUrl": photo.image.url, "items": []}, format="json", **headers
    )
    assert response.json()["error"] == {"code": "INSUFFICIENT_ITEMS", "message": expected, "field": "items"}


def test_job_error_message_is_translated_for_the_client(api, photo, catalogue):
    from fitting.models import FittingResult
    from tests.factories import start_job

    job = start_job(photo.owner, photo, catalogue["top"])
    FittingResult.objects.filter(id=job.id).update(
        status="failed", failed_step="top", error_code="ENGINE_BLOCKED", error_message="IMAGE_SAFETY"
    )
    ko = api.get(f"/api/virtual-fitting/{job.id}").json()["error"]
    en = api.get(f"/api/virtual-fitting/{job.id}", HTTP_ACCEPT_LANGUAGE="en").json()["error"]
    assert ko == {"code": "ENGINE_BLOCKED", "message": "안전 또는 정책상의 이유로 이미지 엔진이 요청을 거부했습니다."}
    assert en["message"] == "The image engine refused the request for safety or policy reasons."


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (None, "원피스는 상의와 하의를 대신합니다. 원피스 또는 상의와 하의 중 하나를 고르세요."),
        ("en", "A dress replaces the top and the bottom: pick a dress, or a top and a bottom."),
    ],
)
def test_category_conflict_message_follows_accept_language(api, photo, catalogue, language, expected):
    from tests.factories import make_item

    headers = {"HTTP_ACCEPT_LANGUAGE": language} if language else {}
    items = [{"itemId": make_item("dress").id, "category": "dress"}, {"itemId": catalogue["top"].id, "category": "top"}]
    response = api.post(
        "/api/virtual-fitting", {"userPhotoUrl": photo.image.url, "items": items}, format="json", **headers
    )
    assert response.json()["error"] == {"code": "CATEGORY_CONFLICT", "message": expected, "field": "items[1].category"}


def test_the_job_schema_discloses_what_made_the_images(client, db):
    schemas = yaml.safe_load(client.get("/api/schema/").content)["components"]["schemas"]
    job = schemas["Job"]
    assert {"aiGenerated", "engine"} <= set(job["required"])
    assert job["properties"]["aiGenerated"]["type"] == "boolean"
    assert "AI-generated" in job["properties"]["aiGenerated"]["description"]
    assert job["properties"]["engine"]["allOf"][0]["$ref"].endswith("/JobEngine")
    assert set(schemas["JobEngine"]["required"]) == {"name", "model"}
