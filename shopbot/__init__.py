"""What every part of the product shares: settings, logging, the conversation store."""
