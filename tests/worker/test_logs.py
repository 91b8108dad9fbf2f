import logging

from streams.worker.logs import Repeats


def _record(name: str, msg: str, created: float, *args: object) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)
    record.created = created
    return record


def test_a_clients_repeated_complaint_passes_once_a_minute() -> None:
    repeats = Repeats(interval=60.0)
    template = "Unable connect to node %s: %s"
    passed = [
        repeats.filter(_record("aiokafka.conn", template, t, "0", "refused"))
        for t in (0.0, 0.1, 30.0, 59.9, 60.0, 61.0, 120.5)
    ]
    assert passed == [True, False, False, False, True, False, True]
    # another message of the same client, and anything outside the clients, always pass
    assert repeats.filter(_record("aiokafka.conn", "Closing connection", 1.0))
    assert all(
        repeats.filter(_record("streams.worker.ingest", template, t)) for t in (0.0, 0.1, 0.2)
    )
