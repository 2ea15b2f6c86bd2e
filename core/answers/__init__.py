"""The answer flow every platform shares: which request starts a generation, the
queue of one, which answer a button addresses and whether the presser owns it,
what a revision page shows, how an answer's end is noted. A platform supplies a
`Surface` (send a notice, make a sink, draw a finished row) and draws the
`Controls`; the decisions are made here once."""

from core.answers.controls import Controls, answer_controls, newest_controls
from core.answers.flow import AnswerFlow, ButtonCheck, Origin, Surface
from core.answers.notes import outcome_note

__all__ = [
    "AnswerFlow",
    "ButtonCheck",
    "Controls",
    "Origin",
    "Surface",
    "answer_controls",
    "newest_controls",
    "outcome_note",
]
