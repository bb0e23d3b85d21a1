"""The bot's web server: the webhook, the reference images RunComfy fetches, a health path."""
