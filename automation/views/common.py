"""What every staff page here shares. The pages are mounted through ModelAdmin.get_urls()
and wrapped in admin_site.admin_view(), which requires an active staff login, applies
CSRF protection and disables caching; the checks below add the model permission."""

from collections.abc import Callable

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, JsonResponse

from automation.exceptions import AutomationError


def require_perm(request, *perms: str) -> None:
    """Refuse unless the user holds at least one of `perms`."""
    if not any(request.user.has_perm(perm) for perm in perms):
        raise PermissionDenied


def admin_context(request, model_admin, title: str, **extra) -> dict:
    """The admin's own context (sidebar, user tools, dark mode), plus the page's."""
    return {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "app_label": model_admin.model._meta.app_label,
        **extra,
    }


def json_error(
    message: str, *, status: int = 400, code: str = "bad_request", fields: dict | None = None
) -> JsonResponse:
    """The API's one error shape (docs/rest-api.md), for the pages' JSON endpoints too."""
    return JsonResponse(
        {"error": {"code": code, "message": message, "fields": fields or {}}}, status=status
    )


def json_service_error(exc: AutomationError) -> JsonResponse:
    return json_error(exc.message, status=exc.http_status, code=exc.code, fields=exc.fields)


def bind(model_admin, view: Callable) -> Callable:
    """`view(request, model_admin, ...)` as a staff-only admin view."""

    def wrapper(request, *args, **kwargs):
        return view(request, model_admin, *args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return model_admin.admin_site.admin_view(wrapper)


def get_or_404(queryset, pk):
    """queryset.get(pk=pk), with a malformed id (not a UUID) a 404 too."""
    try:
        return queryset.get(pk=pk)
    except (queryset.model.DoesNotExist, ValidationError, ValueError):
        raise Http404 from None
