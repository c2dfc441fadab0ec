"""Celery workers: NLU in batches across conversations, then the dialogue step."""
