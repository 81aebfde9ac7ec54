"""Progress off a terminal: a line every few seconds, in a form the flow's tasks read."""

from __future__ import annotations

from alseg_core.progress import ProgressLines, progress_bar


def test_progress_lines_count_up_and_end_with_the_total(capsys):
    lines = ProgressLines(3, "score", "img", every=0)
    for _ in range(3):
        lines.update(1)
    lines.set_postfix(loss="0.5")
    lines.close()
    err = capsys.readouterr().err.splitlines()
    assert [e.split(" [")[0] for e in err] == ["score: 1/3 img", "score: 2/3 img", "score: 3/3 img"]
    assert "left" in err[0] and "left" not in err[2] and err[2].endswith(", loss 0.5]")


def test_a_short_step_prints_nothing_and_disabled_progress_is_silent(capsys):
    quiet = ProgressLines(5, "train", "epoch", every=3600)
    quiet.update(5)
    quiet.close()
    off = progress_bar(5, "predict", enabled=False)
    off.update(5)
    off.close()
    assert capsys.readouterr() == ("", "")
    # A step done in one update prints its one line at the end when a line is due.
    whole = ProgressLines(4, "score", "img", every=0)
    whole.update(4)
    whole.close()
    assert capsys.readouterr().err.startswith("score: 4/4 img [")
    # Off a terminal (pytest captures stderr) an enabled bar is the line printer.
    assert isinstance(progress_bar(5, "x", enabled=True), ProgressLines)


def test_the_flow_reads_the_lines_the_steps_print(capsys):
    from tasks.pipeline import PROGRESS_LINE

    lines = ProgressLines(400, "score", "img", every=0)
    lines.update(120)
    match = PROGRESS_LINE.match(capsys.readouterr().err.strip())
    assert match and (match["what"], match["done"], match["total"]) == ("score", "120", "400")
