"""An import job whose worker died is run again by the message's next delivery (acks_late); one whose worker is alive
is left alone by a duplicate delivery (Redis hands a message to a second worker once it has been unacked for the
visibility timeout). PostgreSQL tells the two apart by the advisory lock a running worker holds on the job."""

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from drawbench.catalog.models import Sample
from drawbench.dashboard import catalog_services
from drawbench.dashboard.models import SampleImportJob
from tests.dashboard import test_catalog_pages as catalog_pages

# The catalog pages' fixtures: a model with imported samples only, an upload waiting for a worker (the three-prompt
# set is tests/dashboard/conftest.py's).
closed_model = catalog_pages.closed_model
fresh_media = catalog_pages.fresh_media
pending_job = catalog_pages.pending_job

pytestmark = [pytest.mark.django_db]


def _abandoned(job: SampleImportJob) -> SampleImportJob:
    """As a worker leaves the job when it dies mid-run: marked running, its upload still in storage."""
    SampleImportJob.objects.filter(pk=job.pk).update(
        status=SampleImportJob.Status.RUNNING, started_at=timezone.now(), phase="checking", done=3, total=6
    )
    return SampleImportJob.objects.get(pk=job.pk)


def test_a_job_left_running_by_a_dead_worker_is_run_again_from_the_start(pending_job, fresh_media):
    job = _abandoned(pending_job)
    assert (fresh_media / job.archive_file).is_file()

    done = catalog_services.sample_import_job_execute(job_id=job.pk)

    assert done.status == "done" and done.report["created"] == 6 and (done.done, done.total) == (6, 6)
    assert Sample.objects.count() == 6
    assert not (fresh_media / job.archive_file).exists()
    # And once done, a further delivery changes nothing.
    assert catalog_services.sample_import_job_execute(job_id=job.pk).status == "done"
    assert Sample.objects.count() == 6


def test_a_duplicate_delivery_leaves_a_job_whose_worker_is_alive_alone(pending_job, fresh_media):
    if connection.vendor != "postgresql":
        pytest.skip("the advisory lock that tells a live worker from a dead one is PostgreSQL's")
    job = _abandoned(pending_job)
    settings = connection.settings_dict
    # The live worker: another session holding the job's lock, as sample_import_job_execute does while it runs.
    with psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432,
        autocommit=True,
    ) as worker:  # fmt: skip
        worker.execute("SELECT pg_advisory_lock(%s, %s)", [catalog_services.IMPORT_LOCK_CLASS, job.pk])

        duplicate = catalog_services.sample_import_job_execute(job_id=job.pk)

        assert duplicate.status == "running" and (duplicate.done, duplicate.total) == (3, 6)
        assert Sample.objects.count() == 0 and (fresh_media / job.archive_file).is_file()
    # The worker's session ended (it died): the next delivery runs the job.
    assert catalog_services.sample_import_job_execute(job_id=job.pk).status == "done"
    assert Sample.objects.count() == 6
