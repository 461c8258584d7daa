"""One module per group of figures; each returns a dict of figures and table rows."""
