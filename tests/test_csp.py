"""Every HTML page carries a Content-Security-Policy; inline code runs only with its nonce.

The browser tests (test_demo_browser, test_admin_browser) check that the pages work under it.
"""

import re

import pytest

from tests.factories import make_user


def policy_of(response) -> dict[str, list[str]]:
    directives = (d.strip().split() for d in response["Content-Security-Policy"].split(";"))
    return {name: values for name, *values in directives}


@pytest.mark.parametrize("path", ["/login/", "/admin/login/", "/api/docs/"])
def test_pages_carry_a_policy_without_inline_script(client, db, path):
    response = client.get(path)
    assert response.status_code == 200
    policy = policy_of(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    for directive in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in policy[directive] and "'unsafe-eval'" not in policy[directive]


def test_the_api_docs_inline_script_and_style_carry_the_nonce_of_the_header(client, db):
    response = client.get("/api/docs/")
    nonce = re.search(r"'nonce-([^']+)'", " ".join(policy_of(response)["script-src"])).group(1)
    assert f"'nonce-{nonce}'" in policy_of(response)["style-src"]
    inline = re.findall(r"<(script|style)(?![^>]*\bsrc=)([^>]*)>", response.content.decode())
    assert sorted(tag for tag, _ in inline) == ["script", "style"]
    assert all(f'nonce="{nonce}"' in attributes for _, attributes in inline)
    assert client.get("/api/docs/")["Content-Security-Policy"] != response["Content-Security-Policy"]  # per request


def test_the_admin_dashboard_style_carries_the_nonce(client, db):
    client.force_login(make_user("staff", is_staff=True, is_superuser=True))
    response = client.get("/admin/dashboard/")
    assert response.status_code == 200
    nonce = re.search(r"'nonce-([^']+)'", " ".join(policy_of(response)["style-src"])).group(1)
    assert f'<style nonce="{nonce}">' in response.content.decode()
