from django.db import migrations, models
from django.db.models import Count


def count_comparisons(apps, schema_editor):
    Study = apps.get_model("studies", "Study")
    for study in Study.objects.annotate(n=Count("comparisons")).only("pk"):
        Study.objects.filter(pk=study.pk).update(n_comparisons=study.n)


class Migration(migrations.Migration):
    dependencies = [("studies", "0005_assignment_rater_index")]

    operations = [
        migrations.AddField(
            model_name="study", name="n_comparisons", field=models.PositiveIntegerField(default=0, editable=False)
        ),
        migrations.RunPython(count_comparisons, migrations.RunPython.noop),
    ]
