"""The operator's only I/O: the Kubernetes API (official client, run in threads) and the NAA
management HTTP API (aiohttp). Called by `services`."""
