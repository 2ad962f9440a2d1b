"""Helpers the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import json

ANY = object()  # assert_error: the field is not checked


def body(photo, *items, **fields) -> dict:
    """A POST /api/virtual-fitting body: the photo's URL, the items, and any other fields."""
    return {
        "userPhotoUrl": photo.image.url,
        "items": [{"itemId": item.id, "category": item.category} for item in items],
        **fields,
    }


def assert_error(response, status: int, code: str, field: object = ANY) -> dict:
    """The response is the API's error shape ``{"error": {"code", "message", "field"}}`` with
    ``status`` and ``code``, a message, and ``field`` when given; the error."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert set(error) == {"code", "message", "field"}
    assert error["code"] == code
    assert error["message"]
    if field is not ANY:
        assert error["field"] == field
    return error
