"""The dialogue: state machine, policies and replies. Plain Python, no Redis, Celery or aiohttp."""

from .engine import Annotation, Handoff, StepResult, step
from .policy import Policy, PolicyError, load_policy
from .state import ConversationState

__all__ = ["Annotation", "ConversationState", "Handoff", "Policy", "PolicyError", "StepResult", "load_policy", "step"]
