"""What the tests share: request bodies and signing (examples.py), Stream's API in memory with
a check of every request against Stream's spec (stream.py), the primary system's endpoint
(primary.py), import-format histories and the commands (history.py), a service worker in a
process of its own (workers.py), and schemathesis's hooks (schemathesis_hooks.py)."""
