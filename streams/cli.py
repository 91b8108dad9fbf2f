"""The ``livepulse`` command. Options override ``LIVEPULSE_`` environment variables."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from streams.settings import Settings, explain

cli = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="LivePulse: per-room live-commerce funnel metrics from Kafka.",
)
console = Console()
err = Console(stderr=True)

BrokerOpt = Annotated[str | None, typer.Option(help="Bootstrap servers, kafka://host:port.")]
PartitionsOpt = Annotated[int | None, typer.Option(help="Partitions of every topic.")]


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(2)


def quiet_kafka_client() -> None:
    """The one-shot commands report connection failures themselves, in one line."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def load(**options: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in options.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        raise fail(explain(exc)) from None


@cli.command()
def broker(broker: BrokerOpt = None, partitions: PartitionsOpt = None) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, memory only) on loopback, with the topics."""
    from streams import broker as embedded

    settings = load(broker=broker, partitions=partitions)
    quiet_kafka_client()
    try:
        proc = embedded.start_embedded(settings)
        asyncio.run(embedded.ensure_topics(settings))
    except embedded.BrokerError as exc:
        raise fail(str(exc)) from None
    console.print(f"embedded broker listening on {settings.broker} (Ctrl-C to stop)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        embedded.stop(proc)


@cli.command()
def worker(
    broker: BrokerOpt = None,
    partitions: PartitionsOpt = None,
    web_port: Annotated[int | None, typer.Option(help="HTTP port for /metrics, /rooms.")] = None,
    web_host: Annotated[str | None, typer.Option(help="HTTP bind address.")] = None,
    loglevel: Annotated[str | None, typer.Option("--loglevel", "-l")] = None,
) -> None:
    """Run the Faust worker: ingest, per-room windows, /metrics and /rooms."""
    from streams.app import create_app
    from streams.broker import BrokerError, ensure_topics

    settings = load(
        broker=broker,
        partitions=partitions,
        web_port=web_port,
        web_host=web_host,
        loglevel=loglevel,
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    quiet_kafka_client()
    try:
        loop.run_until_complete(ensure_topics(settings))
    except BrokerError as exc:
        raise fail(str(exc)) from None
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    pulse = create_app(settings)
    pulse.worker(loop).execute_from_commandline()


@cli.command()
def produce(
    file: Annotated[Path, typer.Argument(help="JSON lines, one contract-v1 event per line.")],
    broker: BrokerOpt = None,
    partitions: PartitionsOpt = None,
) -> None:
    """Send a JSON-lines file of events to their topics (key = room_id)."""
    from streams.broker import BrokerError
    from streams.produce import InputError, produce_file

    settings = load(broker=broker, partitions=partitions)
    quiet_kafka_client()
    try:
        console.print(asyncio.run(produce_file(file, settings)))
    except (InputError, BrokerError) as exc:
        raise fail(str(exc)) from None


@cli.command()
def demo(
    broker: BrokerOpt = None,
    web_port: Annotated[int | None, typer.Option(help="HTTP port of the worker.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Everything at once: embedded broker, demo traffic, worker, and a live table of rooms."""
    from streams.broker import BrokerError
    from streams.demo import demo_settings, run_demo

    try:
        settings = demo_settings(broker=broker, web_port=web_port)
    except ValidationError as exc:
        raise fail(explain(exc)) from None
    try:
        run_demo(settings, duration, console)
    except BrokerError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
