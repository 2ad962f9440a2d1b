"""Owner-only media: path tricks never reach another user's file; staff need the model's view permission."""

from urllib.parse import unquote

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from tests.factories import make_photo, make_user, run_now, start_job

# Every way to spell a step out of the public items/ directory, and the other path oddities.
TRICKS = [
    "items/../{path}",
    "items/%2e%2e/{path}",
    "items/%2E%2E/{path}",
    "items/.%2e/{path}",
    "items/..%2f{path}",
    "items/%2e%2e%2f{path}",
    "items%2f..%2f{path}",
    "items/./../{path}",
    "items//../{path}",
    "items/x/../../{path}",
    "items/..%5c{path}",
    "items/..\\{path}",
    "./{path}",
    "%2e/{path}",
    "/{path}",
    "{dir}/./{name}",
    "{dir}//{name}",
    "{dir}%2f{name}",
    "{dir}/{name}/.",
    "{dir}/{name}/",
]


def spellings(path: str) -> list[str]:
    directory, name = path.split("/", 1)
    return ["/media/" + t.format(path=path, dir=directory, name=name) for t in TRICKS]


@pytest.fixture
def files(user, catalogue):
    photo = make_photo(user)
    job = run_now(start_job(user, photo, catalogue["top"]))
    result = job.images.get(step="final").image.name
    return {"photo": photo.image.name, "result": result, "item": catalogue["top"].image.name}


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.parametrize("kind", ["photo", "result"])
def test_path_tricks_never_serve_a_private_file(files, other_user, kind):
    for who in (client_for(), client_for(other_user)):
        for url in spellings(files[kind]):
            response = who.get(url)
            assert response.status_code == 404, url


@pytest.mark.parametrize("kind", ["photo", "result"])
def test_the_owner_gets_the_plain_path_only(files, user, kind):
    owner = client_for(user)
    assert owner.get(f"/media/{files[kind]}").status_code == 200
    for url in spellings(files[kind]):
        if unquote(url) != f"/media/{files[kind]}":  # photos%2fname is the plain path, decoded
            assert owner.get(url).status_code == 404, url


def test_catalogue_images_are_public_but_only_by_their_plain_path(files):
    anonymous = client_for()
    assert anonymous.get(f"/media/{files['item']}").status_code == 200
    assert anonymous.get("/media/items/../" + files["item"]).status_code == 404


def staff_with(*codenames: str):
    staff = make_user(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return staff


def test_staff_see_users_images_only_with_the_models_view_permission(files):
    garments_only = client_for(staff_with("change_item", "view_item"))
    assert garments_only.get(f"/media/{files['item']}").status_code == 200
    assert garments_only.get(f"/media/{files['photo']}").status_code == 404
    assert garments_only.get(f"/media/{files['result']}").status_code == 404

    photo_viewer = client_for(staff_with("view_userimage"))
    assert photo_viewer.get(f"/media/{files['photo']}").status_code == 200
    assert photo_viewer.get(f"/media/{files['result']}").status_code == 404

    job_viewer = client_for(staff_with("view_fittingresult"))
    assert job_viewer.get(f"/media/{files['result']}").status_code == 200
    assert job_viewer.get(f"/media/{files['photo']}").status_code == 404

    superuser = client_for(make_user(is_staff=True, is_superuser=True))
    assert superuser.get(f"/media/{files['photo']}").status_code == 200
    assert superuser.get(f"/media/{files['result']}").status_code == 200


def test_a_permission_without_staff_status_sees_nothing_of_others(files):
    not_staff = make_user()
    not_staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_userimage", "view_fittingresult"]))
    assert client_for(not_staff).get(f"/media/{files['photo']}").status_code == 404
