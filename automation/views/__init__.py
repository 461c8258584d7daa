"""Staff pages of the admin (mounted by automation.admin through get_urls())."""
