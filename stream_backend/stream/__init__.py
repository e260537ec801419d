"""Stream itself: building the SDK's client (client.py) and Stream's rules and limits
(rules.py). The SDK is named only here and in the modules that call it through a client."""
