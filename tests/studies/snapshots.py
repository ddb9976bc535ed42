"""Every row of every table of the studies app, to show that a request wrote nothing."""

from django.apps import apps


def studies_rows() -> dict[str, list[tuple]]:
    """{table: its rows in primary-key order}, many-to-many tables included."""
    return {
        model._meta.db_table: list(model._base_manager.order_by("pk").values_list())
        for model in apps.get_app_config("studies").get_models(include_auto_created=True)
    }


def changed_tables(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> list[str]:
    return sorted(table for table in before.keys() | after.keys() if before.get(table) != after.get(table))
