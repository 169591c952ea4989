"""The status listing's row (``P.JOBS``), one definition for the two that answer ``P.STATUS``: a
server's ``Service`` and the broker (which adds the job's ``worker``)."""

from __future__ import annotations

from colorprop_client import protocol as P


def job_row(
    job: str, client: str, asker: str, state: str, mode: str, frames_done: int, frames: int, age_s: float
) -> dict:
    """One job as a status reply lists it; a job of another client than ``asker`` shows its id cut
    short (the full id can fetch or cancel)."""
    return {
        "job": job if client == asker else job[: P.SHORT_JOB_ID],
        "client": client,
        "state": state,
        "mode": mode,
        "frames_done": frames_done,
        "frames": frames,
        "age_s": round(age_s, 1),
    }
