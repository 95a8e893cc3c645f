"""A fake clock for the harness's timings in tests."""


class FakeClock:
    """A clock that only moves when a test or its solver sets ``now``."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now
