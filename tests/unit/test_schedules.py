"""Cron schedules, the pure part: ticks (daylight saving both ways), the catch-up window,
the overlap rules, and what a schedule body may say (flow/core/schedules.py)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flow.core.schedules import (
    MAX_STARTS_PER_PASS,
    MIN_LATENESS_S,
    Overlap,
    ScheduleSpec,
    next_tick,
    parse_schedule,
    plan,
    tick_workflow_id,
    ticks,
    window_ticks,
)
from flow.errors import InvalidInput

PARIS = ZoneInfo("Europe/Paris")


def spec(cron: str = "* * * * *", **fields) -> ScheduleSpec:
    return ScheduleSpec(name="nightly", workflow="DummyWorkflow", cron=cron, **fields)


def utc(*args: int) -> datetime:
    """Naive UTC, as every time in the process."""
    return datetime(*args)


def local_ticks(s: ScheduleSpec, after_local: datetime, before_local: datetime) -> list[str]:
    """The ticks between two local times, as local ISO times with their offsets."""
    after = after_local.astimezone(UTC).replace(tzinfo=None)
    before = before_local.astimezone(UTC).replace(tzinfo=None)
    found = itertools.takewhile(lambda t: t < before, ticks(s, after))
    return [t.replace(tzinfo=UTC).astimezone(ZoneInfo(s.timezone)).isoformat() for t in found]


# -- ticks -------------------------------------------------------------------------------


def test_weekday_mornings_in_paris():
    s = spec("0 9 * * MON-FRI", timezone="Europe/Paris")
    # Friday 2025-01-03 at 10:00 in Paris: next is Monday 9:00 (08:00 UTC in winter).
    assert list(itertools.islice(ticks(s, utc(2025, 1, 3, 9, 0)), 3)) == [
        utc(2025, 1, 6, 8, 0),
        utc(2025, 1, 7, 8, 0),
        utc(2025, 1, 8, 8, 0),
    ]


def test_ticks_are_strictly_after_the_given_time():
    s = spec("0 * * * *")
    assert next_tick(s, utc(2025, 1, 1, 9, 0)) == utc(2025, 1, 1, 10, 0)
    assert next_tick(s, utc(2025, 1, 1, 8, 59, 59, 500_000)) == utc(2025, 1, 1, 9, 0)


def test_six_fields_tick_every_second():
    s = spec("* * * * * *")
    assert list(itertools.islice(ticks(s, utc(2025, 1, 1, 0, 0, 0)), 3)) == [
        utc(2025, 1, 1, 0, 0, 1),
        utc(2025, 1, 1, 0, 0, 2),
        utc(2025, 1, 1, 0, 0, 3),
    ]


def test_spring_forward_neither_skips_nor_doubles_a_fixed_time_tick():
    """Paris, 2025-03-30: 02:00 CET jumps to 03:00 CEST. The 02:30 tick, whose time does
    not exist that night, fires once at 03:00; the other nights keep 02:30."""
    s = spec("30 2 * * *", timezone="Europe/Paris")
    assert local_ticks(s, datetime(2025, 3, 29, 0, 0, tzinfo=PARIS), datetime(2025, 4, 1, 0, 0, tzinfo=PARIS)) == [
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
    ]


def test_fall_back_neither_skips_nor_doubles_a_fixed_time_tick():
    """Paris, 2025-10-26: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice on
    the clock. The tick fires once, at the first 02:30."""
    s = spec("30 2 * * *", timezone="Europe/Paris")
    assert local_ticks(s, datetime(2025, 10, 25, 0, 0, tzinfo=PARIS), datetime(2025, 10, 28, 0, 0, tzinfo=PARIS)) == [
        "2025-10-25T02:30:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-27T02:30:00+01:00",
    ]


def test_hourly_ticks_follow_elapsed_time_across_both_transitions():
    """A schedule whose hour is * runs by elapsed time: an hour apart, every hour, with
    no gap in spring and no double in autumn."""
    s = spec("0 * * * *", timezone="Europe/Paris")
    for day in (datetime(2025, 3, 30, tzinfo=PARIS), datetime(2025, 10, 26, tzinfo=PARIS)):
        found = list(itertools.islice(ticks(s, day.astimezone(UTC).replace(tzinfo=None)), 6))
        assert [b - a for a, b in itertools.pairwise(found)] == [timedelta(hours=1)] * 5
        assert len(set(found)) == 6


def test_a_daily_schedule_fires_once_a_day_through_a_whole_year_of_transitions():
    s = spec("30 2 * * *", timezone="Europe/Paris")
    found = list(itertools.takewhile(lambda t: t < utc(2026, 1, 1), ticks(s, utc(2025, 1, 1))))
    days = [t.replace(tzinfo=UTC).astimezone(PARIS).date() for t in found]
    assert len(found) == 365 == len(set(days))


def test_two_times_that_spring_forward_merges_fire_once():
    # 02:00 and 02:30 do not exist on 2025-03-30: both move to 03:00, which is a tick too.
    s = spec("0,30 2,3 * * *", timezone="Europe/Paris")
    assert local_ticks(s, datetime(2025, 3, 30, 0, 0, tzinfo=PARIS), datetime(2025, 3, 30, 5, 0, tzinfo=PARIS)) == [
        "2025-03-30T03:00:00+02:00",
        "2025-03-30T03:30:00+02:00",
    ]


NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("cron", "zone", "night", "expected"),
    [
        # Six fields (seconds first) keep the rule of five: a fixed time that does not
        # exist fires once at the first valid time, a time the clock passes twice once.
        ("0 30 2 * * *", PARIS, datetime(2026, 3, 29), ["2026-03-29T03:00:00+02:00"]),
        ("0 30 2 * * *", PARIS, datetime(2026, 10, 25), ["2026-10-25T02:30:00+02:00"]),
        ("0 0 2 * * *", NEW_YORK, datetime(2026, 3, 8), ["2026-03-08T03:00:00-04:00"]),
        ("15 30 2 * * *", PARIS, datetime(2026, 3, 29), ["2026-03-29T03:00:00+02:00"]),
        # A fixed hour with a stepped minute is wall-clock time too: four ticks in the
        # autumn night (not eight), and the spring night's skipped hour fires once at 03:00.
        (
            "*/15 2 * * *",
            PARIS,
            datetime(2026, 10, 25),
            [f"2026-10-25T02:{m:02}:00+02:00" for m in (0, 15, 30, 45)],
        ),
        ("*/15 2 * * *", PARIS, datetime(2026, 3, 29), ["2026-03-29T03:00:00+02:00"]),
        ("0 */15 2 * * *", NEW_YORK, datetime(2026, 3, 8), ["2026-03-08T03:00:00-04:00"]),
    ],
)
def test_daylight_saving_neither_skips_nor_doubles_with_seconds_or_a_stepped_minute(cron, zone, night, expected):
    s = spec(cron, timezone=zone.key)
    start = night.replace(tzinfo=zone)
    assert local_ticks(s, start, start + timedelta(hours=12)) == expected


@pytest.mark.parametrize("cron", ["0 30 2 * * *", "0 0 2 * * *", "*/15 2 * * *", "30 2 * * *", "*/20 * 2 * * *"])
@pytest.mark.parametrize(
    ("zone", "nights"),
    [(PARIS, [datetime(2026, 3, 29), datetime(2026, 10, 25)]), (NEW_YORK, [datetime(2026, 3, 8)])],
)
def test_every_night_around_a_transition_ticks_and_no_wall_clock_time_fires_twice(cron, zone, nights):
    s = spec(cron, timezone=zone.key)
    for night in nights:
        start = (night - timedelta(days=1)).replace(tzinfo=zone)
        found = local_ticks(s, start, start + timedelta(days=3))
        walls = [t[:19] for t in found]
        assert len(walls) == len(set(walls)), found
        assert {t[:10] for t in found} == {(night + timedelta(days=d)).date().isoformat() for d in (-1, 0, 1)}, found


def test_a_tick_names_one_workflow_id():
    a = tick_workflow_id("nightly", utc(2025, 1, 1, 9))
    assert a == tick_workflow_id("nightly", utc(2025, 1, 1, 9))
    assert len(a) == 36
    assert a != tick_workflow_id("nightly", utc(2025, 1, 1, 10))
    assert a != tick_workflow_id("weekly", utc(2025, 1, 1, 9))


# -- one pass: the catch-up window -----------------------------------------------------------

NOW = utc(2025, 1, 1, 12, 0, 0)


def test_a_due_tick_starts_and_the_next_one_is_named():
    p = plan(spec("0 * * * *"), now=NOW + timedelta(seconds=1), last_tick_at=NOW - timedelta(minutes=30))
    assert p.start == (NOW,)
    assert p.last_tick_at == NOW
    assert p.next_tick_at == NOW + timedelta(hours=1)
    assert p.skipped == 0


def test_nothing_is_due_before_the_tick():
    p = plan(spec("0 * * * *"), now=NOW - timedelta(seconds=1), last_tick_at=NOW - timedelta(minutes=30))
    assert p.start == () and p.last_tick_at == NOW - timedelta(minutes=30)
    assert p.next_tick_at == NOW


def test_missed_ticks_start_up_to_catch_up_s_back_and_older_ones_are_skipped():
    # Down from 06:30 to 12:00:30 with a window reaching back to 10:00 (its edge is in):
    # 10:00, 11:00 and 12:00 start; 07:00, 08:00 and 09:00 are skipped.
    s = spec("0 * * * *", catch_up_s=2 * 3600)
    # allow_all, to see the window itself (under skip a started tick's run is still
    # running when the next tick is looked at).
    p = plan(
        spec("0 * * * *", catch_up_s=2 * 3600 + 30, overlap=Overlap.ALLOW_ALL),
        now=NOW + timedelta(seconds=30),
        last_tick_at=utc(2025, 1, 1, 6, 30),
    )
    assert p.start == (utc(2025, 1, 1, 10), utc(2025, 1, 1, 11), NOW)
    assert p.missed == 3 and p.last_skipped_at == utc(2025, 1, 1, 9)
    assert p.last_tick_at == NOW
    # With the default overlap (skip), the first tick in the window starts and the
    # others find it running.
    p = plan(s, now=NOW + timedelta(seconds=30), last_tick_at=utc(2025, 1, 1, 6, 30))
    assert p.start == (utc(2025, 1, 1, 11),)
    assert (p.missed, p.overlapped) == (4, 1)


def test_catch_up_zero_still_starts_a_tick_that_is_a_few_seconds_late():
    s = spec("0 * * * *", catch_up_s=0)
    late = plan(s, now=NOW + timedelta(seconds=MIN_LATENESS_S - 1), last_tick_at=NOW - timedelta(minutes=1))
    assert late.start == (NOW,)
    missed = plan(s, now=NOW + timedelta(seconds=MIN_LATENESS_S + 1), last_tick_at=NOW - timedelta(minutes=1))
    assert missed.start == () and missed.missed == 1 and missed.last_tick_at == NOW


def test_a_long_outage_is_counted_exactly_over_several_passes():
    s = spec("* * * * * *", catch_up_s=0)  # every second
    last = NOW - timedelta(days=3)
    missed = overlapped = passes = 0
    started: list[datetime] = []
    while True:
        p = plan(s, now=NOW, last_tick_at=last, running=bool(started))
        passes += 1
        missed += p.missed
        overlapped += p.overlapped
        started += p.start
        last = p.last_tick_at
        if p.next_tick_at is None or p.next_tick_at > NOW:
            break
    assert passes > 1
    # The window keeps its edge: the ticks of the last MIN_LATENESS_S seconds, both ends in.
    assert missed == 3 * 86400 - MIN_LATENESS_S - 1
    assert started == [NOW - timedelta(seconds=MIN_LATENESS_S)]
    assert overlapped == MIN_LATENESS_S
    assert last == NOW


def test_a_pass_starts_at_most_its_bound_and_the_next_pass_goes_on():
    s = spec("* * * * * *", catch_up_s=3600, overlap=Overlap.ALLOW_ALL)
    p = plan(s, now=NOW, last_tick_at=NOW - timedelta(seconds=500))
    assert len(p.start) == MAX_STARTS_PER_PASS
    assert p.next_tick_at == p.last_tick_at + timedelta(seconds=1) <= NOW
    again = plan(s, now=NOW, last_tick_at=p.last_tick_at)
    assert again.start[0] == p.next_tick_at


# -- one pass: overlap ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlap", "running", "buffered", "expected_start", "expected_buffered", "overlapped"),
    [
        # Nothing running: every rule starts the tick.
        (Overlap.SKIP, False, None, [NOW], None, 0),
        (Overlap.BUFFER_ONE, False, None, [NOW], None, 0),
        (Overlap.ALLOW_ALL, False, None, [NOW], None, 0),
        # The previous run is in progress.
        (Overlap.SKIP, True, None, [], None, 1),
        (Overlap.BUFFER_ONE, True, None, [], NOW, 0),
        (Overlap.ALLOW_ALL, True, None, [NOW], None, 0),
        # buffer_one holds one tick at most: a second one while it waits is skipped.
        (Overlap.BUFFER_ONE, True, NOW - timedelta(hours=1), [], NOW - timedelta(hours=1), 1),
        # The run ended: the held tick starts first; the new one then finds it running.
        (Overlap.BUFFER_ONE, False, NOW - timedelta(hours=1), [NOW - timedelta(hours=1)], NOW, 0),
    ],
)
def test_overlap_rules(overlap, running, buffered, expected_start, expected_buffered, overlapped):
    p = plan(
        spec("0 * * * *", overlap=overlap, catch_up_s=7200),
        now=NOW + timedelta(seconds=1),
        last_tick_at=NOW - timedelta(minutes=30),
        running=running,
        buffered_tick_at=buffered,
    )
    assert list(p.start) == expected_start
    assert p.buffered_tick_at == expected_buffered
    assert p.overlapped == overlapped
    assert p.last_tick_at == NOW


def test_skip_while_running_records_the_skipped_tick():
    p = plan(spec("0 * * * *"), now=NOW + timedelta(seconds=1), last_tick_at=NOW - timedelta(minutes=1), running=True)
    assert p.start == () and p.last_skipped_at == NOW and p.skipped == 1


def test_a_tick_whose_workflow_exists_counts_as_started_whatever_the_overlap():
    """An engine that started the tick and died before recording it: the next pass must
    not call the tick skipped while its workflow runs."""
    p = plan(
        spec("0 * * * *"),
        now=NOW + timedelta(seconds=1),
        last_tick_at=NOW - timedelta(minutes=1),
        running=True,
        started=frozenset({NOW}),
    )
    assert p.start == (NOW,) and p.skipped == 0


def test_window_ticks_are_the_ticks_a_pass_may_start():
    s = spec("0 * * * *", catch_up_s=2 * 3600)
    assert window_ticks(s, last_tick_at=utc(2025, 1, 1, 6, 30), now=NOW + timedelta(seconds=30)) == [
        utc(2025, 1, 1, 11),
        NOW,
    ]


# -- the body ---------------------------------------------------------------------------------


def test_a_full_body_parses():
    body = {
        "workflow": "DummyWorkflow",
        "input_data": {"x": 1},
        "cron": "0  9 * * MON-FRI",
        "timezone": "Europe/Paris",
        "overlap": "buffer_one",
        "catch_up_s": 3600,
        "paused": True,
        "priority": 1,
    }
    s = parse_schedule(body, name="mornings")
    assert s == ScheduleSpec(
        name="mornings",
        workflow="DummyWorkflow",
        cron="0 9 * * MON-FRI",
        input_data={"x": 1},
        timezone="Europe/Paris",
        overlap=Overlap.BUFFER_ONE,
        catch_up_s=3600,
        paused=True,
        priority=1,
    )
    assert parse_schedule(s.to_dict(), name="mornings") == s
    assert parse_schedule({"workflow": "W", "cron": "* * * * *"}, name="w").priority == 3


@pytest.mark.parametrize(
    ("body", "path", "says"),
    [
        ({"cron": "* * * * *"}, "$.workflow", "required"),
        ({"workflow": "W"}, "$.cron", "required"),
        ({"workflow": "W", "cron": "61 * * * *"}, "$.cron", "not a cron expression"),
        ({"workflow": "W", "cron": "every day"}, "$.cron", "not a cron expression"),
        ({"workflow": "W", "cron": "0 0 30 2 *"}, "$.cron", ""),
        ({"workflow": "W", "cron": "* * * * *", "timezone": "Mars/Olympus"}, "$.timezone", "not a time zone"),
        ({"workflow": "W", "cron": "* * * * *", "timezone": "../etc/passwd"}, "$.timezone", "IANA"),
        ({"workflow": "W", "cron": "* * * * *", "overlap": "queue"}, "$.overlap", "skip, buffer_one, allow_all"),
        ({"workflow": "W", "cron": "* * * * *", "catch_up_s": -1}, "$.catch_up_s", "0 to"),
        ({"workflow": "W", "cron": "* * * * *", "catch_up_s": 1.5}, "$.catch_up_s", "integer"),
        ({"workflow": "W", "cron": "* * * * *", "every": 5}, "$.every", "unknown field"),
        ({"workflow": "W", "cron": "* * * * *", "priority": 0}, "$.priority", "an integer from 1 (first) to 5"),
        ({"workflow": "W", "cron": "* * * * *", "priority": 6}, "$.priority", "an integer from 1 (first) to 5"),
        ({"workflow": "W", "cron": "* * * * *", "priority": 2.0}, "$.priority", "an integer from 1 (first) to 5"),
        ({"workflow": "W", "cron": "* * * * *", "priority": "1"}, "$.priority", "an integer from 1 (first) to 5"),
        ({"workflow": "W", "cron": "* * * * *", "name": "other"}, "$.name", "the schedule's name"),
        ({"workflow": "no spaces", "cron": "* * * * *"}, "$.workflow", "registered workflow definition"),
    ],
)
def test_an_invalid_body_names_the_field(body, path, says):
    with pytest.raises(InvalidInput) as e:
        parse_schedule(body, name="mornings")
    assert e.value.path == path
    assert says in e.value.message
