"""seqbot: a Telegram bot for ByteDance Seedream 4.0 sequential images on RunComfy."""
