"""Stream -> primary: a webhook body as Stream signs it (body.py), the claims that hand each
delivery over once (claims.py), and the hand-over itself (handover.py). No Flask here: the
webhook route in app.py verifies the request and calls it."""
