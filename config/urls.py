from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("automation.api.urls")),
    path("hooks/", include("automation.triggers.webhooks.urls")),
    path("", include("automation.api.ops_urls")),
]

admin.site.site_header = "entityflow"
admin.site.site_title = "entityflow"
admin.site.index_title = "Entities and automation"
