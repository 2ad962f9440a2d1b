"""The API docs' schema names read as names: no "FittingRequestRequest"."""

import re

import yaml


def test_schema_component_names_do_not_stutter(client, db):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    names = list(schema["components"]["schemas"])
    assert {"FittingRequest", "FittingItemRequest", "CredentialsRequest"} <= set(names)
    stutters = [name for name in names if re.search(r"([A-Z][a-z]+)\1", name) or name.count("Request") > 1]
    assert stutters == []
