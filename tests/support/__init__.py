"""What the tests share: request bodies and signing (examples.py), Stream's API in memory with
a check of every request against Stream's spec (stream.py), import-format histories and the
commands (history.py), the service in a process of its own (processes.py, workers.py), and
schemathesis's hooks (schemathesis_hooks.py). The primary system's endpoint, which the
benchmarks use too, is tools/primary_system.py."""
