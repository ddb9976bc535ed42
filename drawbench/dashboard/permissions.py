"""Model permissions that both the dashboard's pages (drawbench.dashboard.catalog_views) and the researcher API
(drawbench.dashboard.import_apis) require, named once."""

# Importing samples (the dashboard's upload page, POST /api/sample-imports/): the researcher group holds it.
ADD_SAMPLE_PERMISSION = "catalog.add_sample"
