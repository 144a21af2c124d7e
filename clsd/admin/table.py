"""Aligned plain-text tables for the admin shell's human output.

Cells may carry text that came from the network (member names, event
details), so every control character is escaped: a peer must not be able to
move an operator's cursor or retitle their terminal.
"""

import datetime

#: Between two columns.
GAP = "  "
#: Shown for a missing value (C{None}) and for an empty list.
EMPTY_CELL = "-"
#: Shown under the header when a table has no rows.
NO_ROWS = "(none)"


def printable(text):
    """C{text} with every non-printable character (newline, ESC, ...) shown as an escape."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def utc_time(posix_time):
    """``2023-11-14 03:12:04Z``: a wall-clock time as the shell shows it."""
    moment = datetime.datetime.fromtimestamp(posix_time, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def cell(value):
    """The text of one cell: lists joined by commas, C{None} as L{EMPTY_CELL}."""
    if value is None:
        return EMPTY_CELL
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(printable(item) for item in value) or EMPTY_CELL
    return printable(value)


def _is_numeric(values):
    """A column is right-aligned when every value present is a number."""
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in present
    )


def format_table(headers, rows):
    """Lay out C{rows} (sequences of values) under C{headers}, one line each.

    Numeric columns are right-aligned, the rest left-aligned; trailing
    spaces are stripped. The result ends with a newline.
    """
    headers = [printable(h) for h in headers]
    rows = [tuple(row) for row in rows]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, expected {len(headers)}")
    numeric = [_is_numeric([row[i] for row in rows]) for i in range(len(headers))]
    texts = [[cell(value) for value in row] for row in rows]
    widths = [
        max([len(headers[i])] + [len(text[i]) for text in texts])
        for i in range(len(headers))
    ]

    def line(cells):
        parts = [
            c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i])
            for i, c in enumerate(cells)
        ]
        return GAP.join(parts).rstrip()

    lines = [line(headers)]
    lines.extend(line(text) for text in texts)
    if not texts:
        lines.append(NO_ROWS)
    return "\n".join(lines) + "\n"
