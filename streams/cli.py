"""The ``livepulse`` command. Options override ``LIVEPULSE_`` environment variables."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
    # soft_wrap: one line however long (a path), not folded at the terminal's width
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
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
    from streams.processes import stop
    from streams.worker import broker as embedded

    settings = load(broker=broker, partitions=partitions)
    quiet_kafka_client()
    try:
        proc = embedded.start_embedded(settings)
        asyncio.run(embedded.ensure_topics(settings))
    except embedded.BrokerError as exc:
        raise fail(str(exc)) from None
    console.print(f"embedded broker listening on {settings.broker} (Ctrl-C to stop)")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(proc, 5)


@cli.command()
def worker(
    broker: BrokerOpt = None,
    partitions: PartitionsOpt = None,
    web_port: Annotated[int | None, typer.Option(help="HTTP port for /metrics, /rooms.")] = None,
    web_host: Annotated[str | None, typer.Option(help="HTTP bind address.")] = None,
    loglevel: Annotated[str | None, typer.Option("--loglevel", "-l")] = None,
) -> None:
    """Run the Faust worker: ingest, per-room windows, /metrics and /rooms."""
    from streams.worker.app import create_app
    from streams.worker.broker import BrokerError, ensure_topics

    settings = load(
        broker=broker,
        partitions=partitions,
        web_port=web_port,
        web_host=web_host,
        loglevel=loglevel,
    )
    loop = _event_loop()
    asyncio.set_event_loop(loop)
    quiet_kafka_client()
    try:
        replication = loop.run_until_complete(ensure_topics(settings))
    except BrokerError as exc:
        raise fail(str(exc)) from None
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    pulse = create_app(settings, replication)
    # The worker allocates short-lived objects by the million (events, tuples, window
    # updates) and keeps few cycles: the default generation-0 threshold of 700 runs the
    # collector several thousand times a second under load. Startup objects are frozen out
    # of its scans.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    pulse.worker(loop).execute_from_commandline()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handled as Ctrl-C (a container's stop signal)."""
    raise KeyboardInterrupt


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (a fifth faster here: the worker's time goes to handing
    Kafka messages through the event loop), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@cli.command()
def produce(
    file: Annotated[Path, typer.Argument(help="JSON lines, one contract-v1 event per line.")],
    broker: BrokerOpt = None,
    partitions: PartitionsOpt = None,
) -> None:
    """Send a JSON-lines file of events to their topics (key = room_id)."""
    from streams.commands.produce import InputError, produce_file
    from streams.worker.broker import BrokerError

    settings = load(broker=broker, partitions=partitions)
    quiet_kafka_client()
    try:
        console.print(asyncio.run(produce_file(file, settings)))
    except (InputError, BrokerError) as exc:
        raise fail(str(exc)) from None


def _progress(label: str) -> tuple[Progress, Callable[[int, int | None], None]]:
    """A progress bar that appears with the first update (a quick failure shows none)."""
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    task = bar.add_task(label, total=None, rate="")
    started = time.monotonic()

    def update(done: int, total: int | None) -> None:
        if not bar.live.is_started:
            bar.start()
        rate = done / max(time.monotonic() - started, 1e-9)
        bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} records/s")

    return bar, update


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--since: expected epoch milliseconds or an ISO time, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


@cli.command()
def record(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON-lines file to write.")],
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="Topic to record (repeatable); default: the sources."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Start at this time (epoch ms or ISO 8601) instead of the beginning."),
    ] = None,
    follow: Annotated[bool, typer.Option(help="Keep recording new records until Ctrl-C.")] = False,
    broker: BrokerOpt = None,
) -> None:
    """Dump topics to a JSON-lines file (topic, partition, offset, key, value, headers, time)."""
    from streams.commands.recording import RecordingError
    from streams.commands.recording import record as do_record
    from streams.worker.broker import BrokerError

    settings = load(broker=broker)
    quiet_kafka_client()
    topics = topic or list(settings.source_topics)
    bar, update = _progress("recording")
    try:
        try:
            count = asyncio.run(
                do_record(
                    settings, topics, out, since_ms=_since(since), follow=follow, progress=update
                )
            )
        finally:
            bar.stop()
    except (BrokerError, RecordingError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{out}: cannot write: {exc.strerror}") from None
    except KeyboardInterrupt:
        count = None
    console.print(f"recorded {'until Ctrl-C' if count is None else count} records to {out}")


@cli.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A file written by `livepulse record`.")],
    topic_prefix: Annotated[str, typer.Option(help="Prefix for every target topic.")] = "",
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="Rename a topic: OLD=NEW (repeatable)."),
    ] = None,
    speed: Annotated[
        str, typer.Option(help="'max' (as fast as possible) or N: N× the recorded pace.")
    ] = "max",
    broker: BrokerOpt = None,
) -> None:
    """Send a recording back into topics, keeping keys, headers, timestamps and partitions."""
    from streams.commands.recording import RecordingError
    from streams.commands.recording import replay as do_replay
    from streams.worker.broker import BrokerError

    settings = load(broker=broker)
    quiet_kafka_client()
    mapping = {}
    for item in map_ or []:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise fail(f"--map: expected OLD=NEW, not {item!r}")
        mapping[old] = new
    pace = _speed(speed)
    bar, update = _progress("replaying")
    try:
        try:
            counts = asyncio.run(
                do_replay(
                    settings,
                    file,
                    prefix=topic_prefix,
                    mapping=mapping,
                    speed=pace,
                    progress=update,
                )
            )
        finally:
            bar.stop()
    except (BrokerError, RecordingError) as exc:
        raise fail(str(exc)) from None
    per_topic = ", ".join(f"{t} {n}" for t, n in sorted(counts.items()))
    console.print(f"replayed {sum(counts.values())} records ({per_topic or 'none'})")


INCIDENT_KINDS = ("payment_outage", "stockout", "traffic_cut", "conversion_decay")


@cli.command()
def simulate(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write a recording file instead of sending to Kafka."),
    ] = None,
    truth: Annotated[Path | None, typer.Option(help="Write the ground truth (JSON) here.")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same session.")] = 1,
    rooms: Annotated[int, typer.Option(min=1, help="Live rooms.")] = 20,
    minutes: Annotated[float, typer.Option(min=0.1, help="Session length.")] = 30.0,
    rate: Annotated[
        float, typer.Option(min=0.1, help="Average total events/s of the session.")
    ] = 2000.0,
    speed: Annotated[str, typer.Option(help="1: real time; N: N× real time; max: flat out.")] = "1",
    incidents: Annotated[
        str, typer.Option(help=f"Comma list of {', '.join(INCIDENT_KINDS)}, or none.")
    ] = ",".join(INCIDENT_KINDS),
    out_of_order_share: Annotated[float, typer.Option(min=0, max=1)] = 0.02,
    late_share: Annotated[float, typer.Option(min=0, max=1)] = 0.002,
    malformed_share: Annotated[float, typer.Option(min=0, max=1)] = 0.001,
    broker: BrokerOpt = None,
    partitions: PartitionsOpt = None,
) -> None:
    """Generate live-room sessions (arcs, flash sales, incidents) with their ground truth."""
    from streams.sim.publish import (
        Placement,
        TruthInBackground,
        configure,
        send_to_kafka,
        write_file,
    )
    from streams.worker.broker import BrokerError

    settings = load(broker=broker, partitions=partitions)
    quiet_kafka_client()
    pace = _speed(speed)
    kinds = (
        () if incidents.strip() in ("", "none") else tuple(k.strip() for k in incidents.split(","))
    )
    unknown = sorted(set(kinds) - set(INCIDENT_KINDS))
    if unknown:
        raise fail(
            f"--incidents: unknown kind(s) {', '.join(unknown)}; known: {', '.join(INCIDENT_KINDS)}"
        )
    placement = Placement.for_speed(minutes, pace, int(time.time() * 1000))
    config = configure(
        placement,
        seed=seed,
        rooms=rooms,
        minutes=minutes,
        rate=rate,
        incidents=kinds,
        out_of_order_share=out_of_order_share,
        late_share=late_share,
        malformed_share=malformed_share,
        grace_ms=settings.grace_ms,
        window_ms=settings.window_ms,
        partitions=settings.partitions,
    )
    expected = int(rate * minutes * 60)
    for path in (out, truth):
        if path is not None and not os.access(path.parent, os.W_OK):
            raise fail(f"{path}: cannot write: no writable directory {path.parent}")
    # the truth of the records written or sent, computed in a process of its own
    background = TruthInBackground(config, truth) if truth is not None else None
    done = False
    bar, update = _progress("simulating")
    started = time.perf_counter()
    # SIGTERM (docker compose stop) ends it as Ctrl-C does: what was sent stays sent
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:

            def progress(n: int) -> None:
                update(n, expected)

            also = background.feed if background is not None else None
            if out is not None:
                count = write_file(config, placement, settings, out, progress, also)
            else:
                count = asyncio.run(send_to_kafka(config, placement, settings, progress, also))
        finally:
            bar.stop()
        took = time.perf_counter() - started
        where = str(out) if out is not None else settings.broker
        console.print(
            f"generated {count} records in {took:.2f} s ({count / took:,.0f} records/s) to {where}"
        )
        if background is not None:
            waited = time.perf_counter()
            result = background.result()
            console.print(
                f"truth: {result['windows']} room windows, {result['late']} late, "
                f"{result['malformed']} malformed, {result['incidents']} incidents "
                f"-> {truth} (computed beside the records; waited "
                f"{time.perf_counter() - waited:.2f} s more)"
            )
            took = time.perf_counter() - started
            console.print(f"in all {took:.2f} s ({count / took:,.0f} records/s)")
        done = True
    except BrokerError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        console.print("stopped")
        return
    except OSError as exc:
        raise fail(
            str(exc) if exc.strerror is None else f"{out}: cannot write: {exc.strerror}"
        ) from None
    finally:
        if background is not None and not done:
            background.stop()


def _speed(speed: str) -> float | None:
    if speed == "max":
        return None
    try:
        pace = float(speed)
    except ValueError:
        pace = -1
    if not pace > 0:
        raise fail(f"--speed: expected 'max' or a number above 0, not {speed!r}")
    return pace


@cli.command()
def demo(
    broker: BrokerOpt = None,
    web_port: Annotated[int | None, typer.Option(help="HTTP port of the worker.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Everything at once: embedded broker, demo traffic, worker, and a live table of rooms."""
    from streams.commands.demo import demo_settings, run_demo
    from streams.worker.broker import BrokerError

    try:
        settings = demo_settings(broker=broker, web_port=web_port)
    except ValidationError as exc:
        raise fail(explain(exc)) from None
    # SIGTERM (a terminal closed, `timeout`, a service manager) stops it as Ctrl-C does: the
    # worker and the broker are stopped, not left running
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_demo(settings, duration, console)
    except BrokerError as exc:
        raise fail(str(exc)) from None


@cli.command("evaluate-alerts")
def evaluate_alerts(
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Seeds: a range (1-12) or a list (1,2,7). Default 1-12; with --sweep the "
            "tuning seeds."
        ),
    ] = None,
    rooms: Annotated[int, typer.Option(help="Rooms per session.")] = 6,
    minutes: Annotated[float, typer.Option(help="Session length in minutes.")] = 30.0,
    rate: Annotated[float, typer.Option(help="Average total events/s of a session.")] = 800.0,
    rules: Annotated[
        bool | None,
        typer.Option(
            "--rules/--no-rules",
            help="Also evaluate the Prometheus rules (default: when their module imports).",
        ),
    ] = None,
    jobs: Annotated[int, typer.Option(help="Sessions simulated in parallel processes.")] = 2,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the report (JSON).")
    ] = None,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="Detection curves on a second incident model (streams.sim.family): recall "
            "and delay by stage, drop, duration and room size; with --rules a documented "
            "subset through a real Prometheus.",
        ),
    ] = False,
    held_out: Annotated[
        bool, typer.Option("--held-out", help="With --sweep: the held-out seeds.")
    ] = False,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="With --sweep: write the tables here.")
    ] = None,
) -> None:
    """Simulated sessions with incidents (and without) through the detector: recall, delay,
    precision and false alerts per incident kind."""
    import orjson

    from streams.evaluation import in_stream as evaluation
    from streams.evaluation import tables

    if sweep:
        _sweep(seeds, held_out, rules, jobs, out, markdown)
        return
    try:
        config = evaluation.EvalConfig(
            seeds=evaluation.parse_seeds(seeds or "1-12"), rooms=rooms, minutes=minutes, rate=rate
        )
        config.check()
    except ValueError as exc:
        raise fail(str(exc)) from None
    if jobs < 1:
        raise fail(f"--jobs: expected at least 1, not {jobs}")
    source = None
    if rules is not False:
        try:
            from streams.evaluation.prometheus_rules import evaluate_rules as source
        except ImportError:
            if rules:
                raise fail(
                    "--rules: streams.evaluation.prometheus_rules is not available"
                ) from None
    bar = Progress(
        TextColumn("sessions"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
    task = bar.add_task("sessions", total=2 * len(config.seeds))
    started = time.perf_counter()
    try:
        with bar:
            result = evaluation.evaluate(
                config,
                rules=source,
                jobs=jobs,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except RuntimeError as exc:  # the rules' EvalError (no promtool, ...), a broken pool
        hint = " (--no-rules evaluates the detector alone)" if source else ""
        raise fail(f"{exc}{hint}") from None
    result["seconds"] = round(time.perf_counter() - started, 1)
    for name in ("detector", "rules"):
        if name in result:
            console.print(tables.render(result, name))
    console.print(f"{result['records']:,} records in {result['seconds']} s")
    if out is not None:
        try:
            out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise fail(f"{out}: cannot write: {exc.strerror}") from None


def _sweep(
    seeds: str | None,
    held_out: bool,
    rules: bool | None,
    jobs: int,
    out: Path | None,
    markdown: Path | None,
) -> None:
    """``evaluate-alerts --sweep`` (see streams.evaluation.sweep)."""
    import dataclasses

    import orjson

    from streams.evaluation import in_stream, sweep, tables

    try:
        chosen = in_stream.parse_seeds(seeds) if seeds else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    if jobs < 1:
        raise fail(f"--jobs: expected at least 1, not {jobs}")
    base = sweep.RULES_SUBSET if rules else sweep.SweepConfig()
    config = dataclasses.replace(
        base, seeds=chosen or (sweep.HELD_OUT_SEEDS if held_out else base.seeds)
    )
    source = sweep.rules_detections if rules else None
    bar = Progress(
        TextColumn("sessions"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
    task = bar.add_task("sessions", total=len(config.sessions()))
    commit = _commit()  # the code about to be measured
    started = time.perf_counter()
    try:
        with bar:
            results = sweep.run(
                config,
                rules=source,
                jobs=jobs,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except (RuntimeError, ValueError) as exc:
        raise fail(str(exc)) from None
    result = sweep.report(results, config)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["commit"] = commit
    text = [
        f"Seeds {','.join(map(str, config.seeds))}: {result['records']:,} records, "
        f"{result['seconds']} s. Measured at commit {result['commit'] or 'unknown'}."
    ]
    for name in ("detector", "rules"):
        if name in result:
            text += ["", f"**{name}**", tables.sweep_markdown(result, name)]
    console.print("\n".join(text), markup=False, highlight=False)
    try:
        if out is not None:
            out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        if markdown is not None:
            markdown.write_text("\n".join(text) + "\n")
    except OSError as exc:
        raise fail(f"cannot write: {exc.strerror}") from None


def _commit() -> str | None:
    """The source checkout's commit (a result file says what it measured), if there is one."""
    import subprocess

    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
