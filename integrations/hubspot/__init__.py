"""HubSpot CRM v3 connector (`connector`) and its error mapping (`errors`)."""

from integrations.hubspot.connector import HubSpotConnector

__all__ = ["HubSpotConnector"]
