"""Raw web input: HTML -> main text (`extract`) and e-mail/IP scrubbing (`pii`)."""

from stages.extract import html, pii  # noqa: F401
