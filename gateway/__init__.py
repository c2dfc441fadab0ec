"""The aiohttp gateway: channels' webhooks, the web chat, the agents' API."""
