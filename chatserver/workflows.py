"""The documented import path of the workflow conversation service (see docs/workflows.md): the code
lives in `chatserver.services.workflows`."""

from chatserver.services.workflows import (
    NotFound,
    WorkflowConversation,
    WorkflowConversationManager,
    WorkflowStoreError,
)

__all__ = ["NotFound", "WorkflowConversation", "WorkflowConversationManager", "WorkflowStoreError"]
