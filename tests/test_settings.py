from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import Settings, explain, markdown_table


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEPULSE_BROKER", "kafka://10.0.0.1:9093;kafka://10.0.0.2:9093")
    monkeypatch.setenv("LIVEPULSE_WINDOW_SECONDS", "30")
    monkeypatch.setenv("LIVEPULSE_GRACE_SECONDS", "2.5")
    monkeypatch.setenv("LIVEPULSE_TOPIC_ORDERS", "shop.orders")
    s = Settings()
    assert s.bootstrap_servers == ["10.0.0.1:9093", "10.0.0.2:9093"]
    assert (s.window_ms, s.grace_ms) == (30_000, 2_500)
    assert s.source_topics == ("live.views", "live.clicks", "shop.orders")


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEPULSE_WEB_PORT", "7000")
    assert Settings(web_port=7001).web_port == 7001


def test_a_bad_value_explains_itself_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEPULSE_WINDOW_SECONDS", "0")
    with pytest.raises(ValidationError) as info:
        Settings()
    line = explain(info.value)
    assert "\n" not in line
    assert "LIVEPULSE_WINDOW_SECONDS" in line and "greater than or equal to 1" in line


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(windw_seconds=3)  # type: ignore[call-arg]


def test_broker_without_hosts_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(broker="kafka://")
    assert "LIVEPULSE_BROKER" in explain(info.value)


def test_the_settings_page_lists_every_setting_as_the_code_has_it() -> None:
    readme = (Path(__file__).parents[1] / "docs" / "settings.md").read_text()
    block = readme.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert block == markdown_table(), "run `python -m streams.settings` and paste the table"


def test_rolling_windows_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().rolling_windows == (5, 10)
    monkeypatch.setenv("LIVEPULSE_ROLLING_WINDOWS", "10, 3")
    assert Settings().rolling_windows == (3, 10)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0,5", "positive whole numbers"),
        ("five", "positive whole numbers"),
        ("", "positive whole numbers"),
        ("5,,6", "positive whole numbers"),
        ("31", "exceeds LIVEPULSE_RETENTION_WINDOWS (60)"),
    ],
)
def test_bad_rolling_windows_explain_themselves(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("LIVEPULSE_ROLLING_WINDOWS", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    line = explain(info.value)
    assert "\n" not in line and "LIVEPULSE_ROLLING_WINDOWS" in line and says in line
