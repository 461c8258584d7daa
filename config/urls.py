from django.contrib import admin
from django.urls import include, path

from automation.views.approvals import link_page

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("automation.api.urls")),
    # one-click approval links from emails: no login, the signed token is the credential
    path("approvals/link/<str:token>/", link_page, name="approval-link"),
    path("hooks/", include("automation.triggers.webhooks.urls")),
    path("", include("automation.api.ops_urls")),
]

admin.site.site_header = "entityflow"
admin.site.site_title = "entityflow"
admin.site.index_title = "Entities and automation"
