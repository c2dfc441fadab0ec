"""The one shape of a refusal the admin side raises: a reason safe to show, and the HTTP status to answer."""

from __future__ import annotations


class Refused(ValueError):
    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status
