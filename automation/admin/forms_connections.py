"""The connection form: provider, name, base URL, options and the provider's credentials.

Credentials are write-only. Secret inputs are password fields that never render a
value; on change a blank one keeps what is stored (the help text says whether one is
set). Every registered provider's credential fields are declared on the form class, so
the add page can offer them all and show the chosen provider's (see the template);
only the chosen provider's inputs are read.
"""

from django import forms

from automation.connections import services as connection_services
from automation.connections.secrets import SecretDecryptError
from automation.models import Connection
from integrations.base import CredentialField
from integrations.exceptions import ConnectorError
from integrations.registry import all_connectors, get_connector_class

SET_MARK = "•••• set"
OPTIONS_HELP = (
    "Optional JSON object of non-secret settings, e.g. HubSpot {\"portalId\": 123}, "
    "Dropbox {\"contentBaseUrl\": \"…\"}, OpenAI {\"model\": \"gpt-4o-mini\"}, "
    "HTTP {\"testUrl\": \"…\"}, SQL {\"allowWrites\": true, \"timeout\": 10}. "
    "Any provider: {\"rateLimit\": {\"requests\": 190, \"perSeconds\": 10}} (null: none)."
)


def credential_input_name(provider: str, key: str) -> str:
    return f"{provider}__{key}"


def _credential_input(spec: CredentialField) -> forms.Field:
    help_text = spec.help_text
    if spec.secret:
        widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
        return forms.CharField(label=spec.label, required=False, widget=widget,
                               help_text=help_text)
    if spec.choices:
        choices = [("", "—"), *((choice, choice) for choice in spec.choices)]
        return forms.ChoiceField(label=spec.label, required=False, choices=choices,
                                 help_text=help_text)
    return forms.CharField(label=spec.label, required=False, help_text=help_text)


class ConnectionFormBase(forms.ModelForm):
    base_url = forms.URLField(label="Base URL", required=False, max_length=300,
                              assume_scheme="https",
                              help_text="Leave empty for the vendor's own URL.")

    class Meta:
        model = Connection
        fields = ["provider", "name", "base_url", "options"]
        help_texts = {"name": "A short slug that functions and steps refer to, e.g. "
                              "“hubspot”."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.editing = self.instance.pk is not None
        if "provider" in self.fields:
            self.fields["provider"] = forms.ChoiceField(choices=[("", "---------")] + [
                (slug, cls.display_name) for slug, cls in all_connectors().items()])
        self.fields["options"].help_text = OPTIONS_HELP
        self.fields["options"].required = False
        self.credential_changes: dict = {}
        self.replace_credentials = not self.editing  # True: credential_changes is the whole set
        if self.editing:
            self._show_stored()

    def _show_stored(self) -> None:
        """Mark the secrets that are set and prefill the non-secret fields."""
        try:
            present = connection_services.connection_credentials_present(self.instance)
            public = connection_services.connection_credentials_public(self.instance)
        except (SecretDecryptError, ConnectorError):  # unreadable, or provider unregistered
            present, public = {}, {}
        for spec in self.specs(self.instance.provider):
            field = self.fields[credential_input_name(self.instance.provider, spec.name)]
            if not spec.secret:
                field.initial = public.get(spec.name, "")
            elif present.get(spec.name):
                field.widget.attrs["placeholder"] = SET_MARK
                field.help_text = f"{SET_MARK}: leave blank to keep it. {spec.help_text}".strip()
            else:
                field.help_text = f"Not set. {spec.help_text}".strip()

    @staticmethod
    def specs(provider: str) -> tuple[CredentialField, ...]:
        try:
            return get_connector_class(provider).credential_fields
        except ConnectorError:  # a provider that is no longer registered
            return ()

    def clean_options(self):
        options = self.cleaned_data.get("options")
        if options in (None, ""):
            return {}
        if not isinstance(options, dict):
            raise forms.ValidationError("Options must be a JSON object.")
        return options

    def clean(self):
        cleaned = super().clean()
        provider = self.instance.provider if self.editing else cleaned.get("provider")
        if not provider:
            return cleaned
        changes = self._entered(provider, cleaned)
        typed = {key: value for key, value in changes.items() if value is not None}
        unreadable = None
        credentials = typed
        if self.editing:
            try:
                credentials = connection_services.credentials_merged(
                    connection=self.instance, changes=changes)
            except SecretDecryptError as exc:  # start afresh: what is typed replaces the set
                unreadable = exc.message
                self.replace_credentials = True
        for key, problems in connection_services.option_errors(
                provider=provider, options=cleaned.get("options") or {}).items():
            self.add_error("options", [f"{key.removeprefix('options.')} {p}" for p in problems])
        errors = connection_services.credential_errors(provider=provider, credentials=credentials)
        if errors and unreadable:
            self.add_error(None, f"{unreadable} Enter all of this connection's credentials.")
        for key, problems in errors.items():
            name = credential_input_name(provider, key.removeprefix("credentials."))
            self.add_error(name if name in self.fields else None, problems)
        self.credential_changes = changes if self.editing and not unreadable else typed
        return cleaned

    def _entered(self, provider: str, cleaned: dict) -> dict:
        """What the user typed: secrets left blank are not changes, unless their
        "remove" box is ticked; a cleared non-secret field removes its value."""
        changes: dict = {}
        for spec in self.specs(provider):
            value = cleaned.get(credential_input_name(provider, spec.name)) or ""
            if value:
                changes[spec.name] = value
            elif self.editing and (not spec.secret or (
                    clearable(spec) and cleaned.get(clear_input_name(provider, spec.name)))):
                changes[spec.name] = None
        return changes

    def changed_credential_labels(self) -> list[str]:
        """Labels (never values) of the credentials this submission changes."""
        provider = self.instance.provider if self.editing else self.cleaned_data.get("provider")
        labels = []
        for spec in self.specs(provider or ""):
            if spec.name not in self.credential_changes:
                continue
            field = self.fields[credential_input_name(provider, spec.name)]
            if spec.secret or (self.credential_changes[spec.name] or "") != (field.initial or ""):
                labels.append(spec.label)
        return labels


def clear_input_name(provider: str, key: str) -> str:
    return f"{provider}__{key}__clear"


def clearable(spec: CredentialField) -> bool:
    """An optional secret can be removed (a blank input keeps it)."""
    return spec.secret and not spec.required


def connection_form_class() -> type[ConnectionFormBase]:
    """The form with one declared input per provider credential, plus a "remove" box
    for each optional secret."""
    declared: dict[str, forms.Field] = {}
    for slug, cls in all_connectors().items():
        for spec in cls.credential_fields:
            declared[credential_input_name(slug, spec.name)] = _credential_input(spec)
            if clearable(spec):
                declared[clear_input_name(slug, spec.name)] = forms.BooleanField(
                    required=False, label=f"Remove the stored {spec.label.lower()}")
    return type("ConnectionForm", (ConnectionFormBase,), declared)


ConnectionForm = connection_form_class()
