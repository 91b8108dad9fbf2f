"""The layer rule of docs/architecture.md, checked in a fresh interpreter: the domain imports
no Kafka client, no Faust and no web server, and nothing outside ``streams.core``."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import streams.core

CORE = sorted(f"streams.core.{m.name}" for m in pkgutil.iter_modules(streams.core.__path__))
FORBIDDEN = ("faust", "mode", "aiokafka", "aiohttp", "prometheus_client", "rocksdict")


def test_the_domain_imports_no_io_and_no_other_layer() -> None:
    assert len(CORE) >= 10, CORE
    probe = (
        "import sys\n"
        f"for name in {CORE!r}:\n"
        "    __import__(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    ours = [m for m in loaded if m.startswith("streams.")]
    assert ours and all(m.startswith("streams.core") for m in ours), ours
