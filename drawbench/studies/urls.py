"""The rater's pages, under the study link /s/<rater_token>/."""

from django.urls import path

from drawbench.studies import views

app_name = "rater"

urlpatterns = [
    path("s/<str:token>/", views.study_entry, name="study-entry"),
    path("s/<str:token>/rate/", views.rate, name="rate"),
    path("s/<str:token>/done/", views.done, name="done"),
    path("s/<str:token>/m/<str:name>", views.display_image, name="display-image"),
]
