"""The human queue: waiting conversations by priority and wait, and what agents do with them."""
