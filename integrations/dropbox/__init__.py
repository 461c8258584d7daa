"""Dropbox API v2 connector (`connector`), its error mapping (`errors`) and token
refresh (`auth`)."""

from integrations.dropbox.connector import DropboxConnector

__all__ = ["DropboxConnector"]
