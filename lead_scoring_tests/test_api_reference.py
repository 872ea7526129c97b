"""docs/api/openapi.json and docs/api/reference.md are the API's own OpenAPI schema and a page
written from it: the test fails when either differs from what the code serves now.

Regenerate both after changing the API:
``.venv/bin/python -m lead_scoring_tests.test_api_reference``
"""

import json
from pathlib import Path

from lead_scoring_assets.api.app import create_app
from lead_scoring_assets.api.auth import ApiKeys

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api"
SCHEMA_FILE = DOCS / "openapi.json"
REFERENCE_FILE = DOCS / "reference.md"
HEADER = """# API reference

Written from the OpenAPI schema the server serves at `/openapi.json` (a copy:
[openapi.json](openapi.json)) by `.venv/bin/python -m lead_scoring_tests.test_api_reference`;
`test_api_reference.py` fails when this page or the copy differs from the code. How to call
it, the keys and examples: [the API](index.md).
"""


def openapi_schema() -> dict:
    """The schema of the application ``lead-scoring serve`` runs (settings do not change it)."""
    app = create_app("sqlite://", keys=ApiKeys(("reference",), ()), cursor_secret="reference")
    return app.openapi()


def _type(schema: dict | bool) -> str:
    """A short reading of a JSON schema: its type or model, with its bounds."""
    if schema is True or schema == {}:
        return "any"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        kinds = [_type(s) for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = any(s.get("type") == "null" for s in schema["anyOf"])
        return " or ".join(kinds) + (" or null" if nullable else "")
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        return f"object of {_type(schema['additionalProperties'])}"
    bounds = [
        f"{word} {schema[key]}"
        for key, word in (
            ("minimum", "≥"),
            ("maximum", "≤"),
            ("minLength", "length ≥"),
            ("maxLength", "length ≤"),
            ("pattern", "pattern"),
            ("format", "format"),
        )
        if key in schema
    ]
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def reference_markdown(schema: dict) -> str:
    lines = [
        HEADER,
        f"Version {schema['info']['version']}: {_cell(schema['info'].get('description'))}",
        "",
    ]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            lines += [
                f"## `{method.upper()} {path}`",
                "",
                operation.get("description", "").strip(),
                "",
            ]
            if operation.get("security"):
                lines += ["Needs an API key in the `X-API-Key` header.", ""]
            parameters = operation.get("parameters", [])
            if parameters:
                lines += [
                    "| parameter | in | required | type | default | meaning |",
                    "|---|---|---|---|---|---|",
                ]
                for p in parameters:
                    default = p["schema"].get("default")
                    lines.append(
                        f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                        f"{_type(p['schema'])} | {'' if default is None else f'`{json.dumps(default)}`'} | "
                        f"{_cell(p.get('description'))} |"
                    )
                lines.append("")
            body = operation.get("requestBody")
            if body:
                body_schema = body["content"]["application/json"]["schema"]
                lines += [f"Request body (JSON): {_type(body_schema)}.", ""]
            lines += ["| status | meaning | body |", "|---|---|---|"]
            for status, response in operation["responses"].items():
                content = response.get("content", {}).get("application/json", {})
                kind = _type(content["schema"]) if content.get("schema") else ""
                lines.append(f"| {status} | {_cell(response['description'])} | {kind} |")
            lines.append("")
    lines += ["## Schemas", ""]
    for name, model in schema["components"]["schemas"].items():
        lines += [f"### {name}", ""]
        if model.get("description"):
            lines += [_cell(model["description"]), ""]
        if "enum" in model:
            lines += ["One of " + ", ".join(f"`{v}`" for v in model["enum"]) + ".", ""]
            continue
        required = set(model.get("required", []))
        lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for field, field_schema in model.get("properties", {}).items():
            lines.append(
                f"| `{field}` | {_type(field_schema)} | "
                f"{'yes' if field in required else 'no'} | "
                f"{_cell(field_schema.get('description'))} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _schema_text(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def test_the_openapi_copy_is_the_served_schema():
    assert SCHEMA_FILE.read_text() == _schema_text(openapi_schema()), (
        "docs/api/openapi.json is stale: run .venv/bin/python -m "
        "lead_scoring_tests.test_api_reference"
    )


def test_the_reference_page_is_written_from_the_schema():
    schema = openapi_schema()
    page = REFERENCE_FILE.read_text()
    assert page == reference_markdown(schema), (
        "docs/api/reference.md is stale: run .venv/bin/python -m "
        "lead_scoring_tests.test_api_reference"
    )
    for path, operations in schema["paths"].items():
        for method in operations:
            assert f"## `{method.upper()} {path}`" in page


def main() -> None:
    schema = openapi_schema()
    SCHEMA_FILE.write_text(_schema_text(schema))
    REFERENCE_FILE.write_text(reference_markdown(schema))
    print(f"wrote {SCHEMA_FILE} and {REFERENCE_FILE}")


if __name__ == "__main__":
    main()
