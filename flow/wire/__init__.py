"""The wire: what travels between processes.

- :mod:`flow.wire.messages`: every message between the starting side, the engines and
  the workers, versioned, each a frozen dataclass;
- :mod:`flow.wire.attempts`: what an attempt carries to a worker and what it reports;
- :mod:`flow.wire.outgoing`: the outbox's record of a message a transition owes.
"""
