"""Jinja filters for money, times and durations, available in every template."""
from __future__ import annotations

from datetime import datetime, timezone

from ..models import utcnow
from ..money import format_usd
from .blueprint import bp


@bp.app_template_filter("usd")
def usd(micros: int | None) -> str:
    """Micro-USD as dollars ("$0.04"); money is never formatted anywhere else."""
    return format_usd(micros or 0)


@bp.app_template_filter("utc")
def utc(moment: datetime | None) -> str:
    """A timestamp as "2026-06-01 12:00 UTC"."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


@bp.app_template_filter("ago")
def ago(moment: datetime | None) -> str:
    """A past timestamp relative to now: "just now", "5 min ago", "3 h ago", or the date."""
    if moment is None:
        return "never"
    seconds = (utcnow() - moment).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)} d ago"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d")


@bp.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    """Elapsed seconds as "0.8 s", "12 s" or "2 min 05 s"."""
    seconds = max(0.0, seconds or 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"
