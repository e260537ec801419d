"""Primary -> Stream: the mirror (mirror.py), what it believes Stream holds (state.py), the
mark on the messages it sends (origin.py), its inputs (inputs.py) and the bodies they are
parsed from (bodies.py). No Flask here: a Python primary backend calls it directly."""
