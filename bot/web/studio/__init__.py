"""The studio: a Telegram Mini App under ``PUBLIC_URL/app/`` where a person sees and works with
their series (issue 22). ``auth`` (initData), ``tokens`` (signed image URLs), ``ratelimit``,
``service`` (who asks, pages, images), ``views`` (the JSON of a series), ``actions`` (the chat's
own code for each button), ``static`` (the page's files), ``handlers`` (tornado)."""
