"""The API's routes: thin aiohttp + MongoDB + Kafka adapters around the pure modules of `aforo.api`."""
