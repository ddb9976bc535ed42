from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "drawbench.dashboard"
    verbose_name = "Researcher dashboard"

    def ready(self) -> None:
        from drawbench.dashboard import checks  # noqa: F401  (registers the deployment checks)
