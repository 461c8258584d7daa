"""Agents (docs/user-guide/agents.md): instructions, a model on an OpenAI-compatible
connection, stored functions as tools, an output schema and limits. GET, POST, PUT
(every field) and PATCH (the fields given); each change bumps the agent's version."""

from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers, status
from rest_framework.response import Response

from automation.api.base import (
    PAGE_PARAMETERS,
    ApiView,
    get_or_404,
    paginate,
    unprocessable,
    validate_input,
)
from automation.api.schema import ObjectField, api_doc, paginated
from automation.exceptions import RunStateError
from automation.models import Agent
from automation.services.agents import agent_connection, agent_save

EXAMPLE = {
    "key": "content-reviewer",
    "instructions": "Review the article for tone and compliance. Answer in JSON.",
    "connection": "llm", "model": "gpt-4o-mini",
    "tools": ["sentiment-analysis", "compliance-check"],
    "outputSchema": {"type": "object", "required": ["requiresHumanReview"],
                     "properties": {"requiresHumanReview": {"type": "boolean"},
                                    "summary": {"type": "string"}}},
    "maxIterations": 6, "maxToolCalls": 10, "maxTokens": 20000, "timeoutSeconds": 120,
}
EXAMPLES = [
    OpenApiExample("A content reviewer", value=EXAMPLE, request_only=True),
    OpenApiExample("Unknown tool", status_codes=["422"], response_only=True, value={
        "error": {"code": "invalid_agent",
                  "message": "tools[1]: Unknown function 'compliance-check'.",
                  "fields": {"tools[1]": ["Unknown function 'compliance-check'."]}}}),
]

# API name -> model field
FIELDS = {"instructions": "instructions", "model": "model", "tools": "tools",
          "outputSchema": "output_schema", "maxIterations": "max_iterations",
          "maxToolCalls": "max_tool_calls", "maxTokens": "max_tokens",
          "timeoutSeconds": "timeout_seconds", "inputPrice": "input_price",
          "outputPrice": "output_price", "description": "description"}


def agents():
    return Agent.objects.select_related("connection")


class AgentSerializer(serializers.Serializer):
    key = serializers.CharField()
    version = serializers.IntegerField()
    instructions = serializers.CharField()
    connection = serializers.CharField(source="connection.name", default=None, allow_null=True)
    model = serializers.CharField()
    tools = serializers.ListField(child=serializers.CharField())
    outputSchema = ObjectField(source="output_schema", allow_null=True)
    maxIterations = serializers.IntegerField(source="max_iterations")
    maxToolCalls = serializers.IntegerField(source="max_tool_calls")
    maxTokens = serializers.IntegerField(source="max_tokens", allow_null=True)
    timeoutSeconds = serializers.IntegerField(source="timeout_seconds", allow_null=True)
    inputPrice = serializers.DecimalField(source="input_price", max_digits=12,
                                          decimal_places=6, coerce_to_string=True)
    outputPrice = serializers.DecimalField(source="output_price", max_digits=12,
                                           decimal_places=6, coerce_to_string=True)
    description = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        ref_name = "Agent"


class AgentInputSerializer(serializers.Serializer):
    key = serializers.SlugField(max_length=100, help_text="The name steps use as agentRole.")
    instructions = serializers.CharField(help_text="The system prompt.")
    connection = serializers.CharField(max_length=100, required=False, allow_null=True,
                                       default=None,
                                       help_text="An OpenAI-compatible connection's name.")
    model = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    tools = serializers.ListField(child=serializers.CharField(max_length=100), required=False,
                                  default=list, max_length=64,
                                  help_text="Names of stored functions the model may call.")
    outputSchema = ObjectField(required=False, allow_null=True, default=None)
    maxIterations = serializers.IntegerField(required=False, default=10)
    maxToolCalls = serializers.IntegerField(required=False, default=20)
    maxTokens = serializers.IntegerField(required=False, allow_null=True, default=None)
    timeoutSeconds = serializers.IntegerField(required=False, allow_null=True, default=None)
    inputPrice = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=0,
                                          required=False, default=0,
                                          help_text="Cost per million prompt tokens.")
    outputPrice = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=0,
                                           required=False, default=0,
                                           help_text="Cost per million completion tokens.")
    description = serializers.CharField(required=False, allow_blank=True, default="")

    class Meta:
        ref_name = "AgentInput"


def _values(data: dict) -> dict:
    values = {FIELDS[name]: value for name, value in data.items() if name in FIELDS}
    if "connection" in data:
        values["connection"] = agent_connection(data["connection"])
    return values


def _body_for(key: str, request) -> object:
    if isinstance(request.data, dict):
        if request.data.get("key", key) != key:
            raise unprocessable("key", "An agent cannot be renamed; create a new one.")
        return {"key": key, **request.data}
    return request.data


class AgentListApi(ApiView):
    @api_doc(parameters=PAGE_PARAMETERS, errors=(400,),
             responses={200: paginated(AgentSerializer, "PaginatedAgentList")},
             summary="List agents")
    def get(self, request):
        return paginate(request, self, agents().order_by("key"), AgentSerializer)


class AgentCreateApi(ApiView):
    @api_doc(request=AgentInputSerializer, responses={201: AgentSerializer},
             errors=(400, 409, 413, 422), examples=EXAMPLES, summary="Create an agent")
    def post(self, request):
        data = validate_input(AgentInputSerializer, request.data)
        if Agent.objects.filter(key=data["key"]).exists():
            raise RunStateError(f"An agent '{data['key']}' already exists; use PUT or PATCH.")
        agent = agent_save(key=data["key"], **_values(data))
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailApi(ApiView):
    @api_doc(responses={200: AgentSerializer}, errors=(404,), summary="Get an agent")
    def get(self, request, key):
        return Response(AgentSerializer(get_or_404(agents(), "agent", key=key)).data)


class AgentReplaceApi(ApiView):
    @api_doc(request=AgentInputSerializer, responses={200: AgentSerializer},
             errors=(400, 404, 413, 422), examples=EXAMPLES,
             summary="Replace every field of an agent (a new version)")
    def put(self, request, key):
        agent = get_or_404(agents(), "agent", key=key)
        data = validate_input(AgentInputSerializer, _body_for(key, request))
        return Response(AgentSerializer(agent_save(key=key, agent=agent, **_values(data))).data)


class AgentUpdateApi(ApiView):
    @api_doc(request=AgentInputSerializer, responses={200: AgentSerializer},
             errors=(400, 404, 413, 422), summary="Change some fields of an agent (a new version)")
    def patch(self, request, key):
        agent = get_or_404(agents(), "agent", key=key)
        data = validate_input(AgentInputSerializer, _body_for(key, request), partial=True)
        return Response(AgentSerializer(agent_save(key=key, agent=agent, **_values(data))).data)
