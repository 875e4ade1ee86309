"""The training report page."""
