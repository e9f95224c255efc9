"""The search page's route (the REST route is in search/urls.py)."""

from django.urls import path

from search.pages import search_page

urlpatterns = [path("search/", search_page, name="search")]
