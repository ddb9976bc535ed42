"""Views imported on their first request, so that loading the URLs (every manage.py command's checks) does not import
what they need: the results pages and APIs pull in scipy, pandas and statsmodels, a second or more at start-up.

A lazy view stands where the view would in a urlpattern. Anything asked of it beyond its name (a request, DRF's
`cls` for the schema, `csrf_exempt` for the CSRF middleware) imports the view and answers as the view would.
"""

from django.utils.module_loading import import_string


class LazyView:
    def __init__(self, dotted_path: str, *, as_view: bool = False, **initkwargs) -> None:
        """`dotted_path` names a view function, or with as_view=True a class-based view (built with `initkwargs`)."""
        module, _, name = dotted_path.rpartition(".")
        # What Django's URL resolver reads from a view (URLPattern.lookup_str) without calling it.
        self.__module__ = module
        self.__name__ = self.__qualname__ = name
        self._path = dotted_path
        self._as_view = as_view
        self._initkwargs = initkwargs
        self._view = None

    def _load(self):
        if self._view is None:
            target = import_string(self._path)
            self._view = target.as_view(**self._initkwargs) if self._as_view else target
        return self._view

    def __call__(self, request, *args, **kwargs):
        return self._load()(request, *args, **kwargs)

    def __getattr__(self, name: str):
        # Dunder lookups (copy, pickle, inspect) and the resolver's view_class check must not import the view.
        if name.startswith("__") or (name == "view_class" and self._view is None):
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __repr__(self) -> str:
        return f"<LazyView {self._path}>"
