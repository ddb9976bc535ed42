"""Celery tasks of the dashboard: they take ids and call a service."""

from celery import shared_task

from drawbench.dashboard.catalog_services import sample_import_job_execute


@shared_task(acks_late=True)
def sample_import_job_run(job_id: int) -> str:
    """Run the sample import job ``job_id`` (queued on the cpu queue by sample_import_job_create); returns its
    status."""
    job = sample_import_job_execute(job_id=job_id)
    return job.status if job is not None else "missing"
