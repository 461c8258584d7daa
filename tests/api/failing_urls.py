"""The real URLconf plus one API view that fails the way a bug does, for the 500 tests."""

from django.urls import path

from automation.api.base import ApiView
from config.urls import urlpatterns as real_urlpatterns

SECRET = "s3cr3t-token-in-the-exception"


class FailingApi(ApiView):
    def get(self, request):
        raise RuntimeError(f"a bug that knows the password {SECRET}")


urlpatterns = [path("api/failing", FailingApi.as_view()), *real_urlpatterns]
