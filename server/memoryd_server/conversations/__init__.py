"""ConversationService: conversations, messages, context windows, session state."""
