"""The model permissions the dashboard's pages and the researcher API require, named once (the researcher group holds
the add and change ones; see drawbench.studies.roles)."""

VIEW_STUDY_PERMISSION = "studies.view_study"
ADD_STUDY_PERMISSION = "studies.add_study"
CHANGE_STUDY_PERMISSION = "studies.change_study"
ADD_MODEL_PERMISSION = "catalog.add_evaluatedmodel"
CHANGE_MODEL_PERMISSION = "catalog.change_evaluatedmodel"
ADD_PROMPT_SET_PERMISSION = "catalog.add_promptset"
CHANGE_PROMPT_SET_PERMISSION = "catalog.change_promptset"
ADD_RUN_PERMISSION = "generation.add_generationrun"
CHANGE_RUN_PERMISSION = "generation.change_generationrun"
# Importing samples (the dashboard's upload page, POST /api/sample-imports/).
ADD_SAMPLE_PERMISSION = "catalog.add_sample"
