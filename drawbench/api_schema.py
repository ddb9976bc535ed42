"""OpenAPI post-processing: the error responses of operations that do not declare their own.

drf-spectacular lists only the responses a view declares; most views declare their 200. Every operation under /api/
can also answer 401 and 403 (unless anyone may call it), 404 (a path with an id or token in it), 400 (it reads a body or
query parameters) and 429 (its view has throttles). Each is added here, with the API's error body, unless the view
says otherwise. A 409 is only where a view declares it.
"""

from rest_framework.permissions import AllowAny
from rest_framework.settings import api_settings

ERROR_SCHEMA_NAME = "ApiError"
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
DESCRIPTIONS = {
    "400": "The input is not valid; the body says what was wrong, by field.",
    "401": "No credentials, or credentials that are not valid.",
    "403": "The credentials lack the role or permission for this.",
    "404": "No such object.",
    "429": "Too many requests; the `Retry-After` header says when to try again.",
}


def _throttled(view_class) -> bool:
    return bool(getattr(view_class, "throttle_classes", api_settings.DEFAULT_THROTTLE_CLASSES))


def _open_to_all(view_class) -> bool:
    """Views anyone may call (a rater's start) answer neither 401 nor 403."""
    permissions = getattr(view_class, "permission_classes", api_settings.DEFAULT_PERMISSION_CLASSES)
    return all(permission is AllowAny for permission in permissions)


def error_responses_hook(result: dict, generator, request, public: bool) -> dict:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(ERROR_SCHEMA_NAME, ERROR_SCHEMA)
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
    callbacks = {(path, method.lower()): callback for path, _, method, callback in generator.endpoints or []}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            view_class = getattr(callbacks.get((path, method)), "cls", None)
            codes = set() if view_class is not None and _open_to_all(view_class) else {"401", "403"}
            if "{" in path:
                codes.add("404")
            if "requestBody" in operation or any(p.get("in") == "query" for p in operation.get("parameters", [])):
                codes.add("400")
            if view_class is not None and _throttled(view_class):
                codes.add("429")
            responses = operation.setdefault("responses", {})
            for code in sorted(codes - set(responses)):
                responses[code] = {
                    "description": DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": reference}},
                }
    return result
