"""`factory coord-check` prints both parametrisations' activation scales and their slopes over width."""

from typer.testing import CliRunner

from datafactory.app.cli import app


def test_coord_check_prints_both_parametrisations():
    result = CliRunner().invoke(app, ["coord-check", "--widths", "32,64", "--steps", "1"], terminal_width=160)
    assert result.exit_code == 0, result.output
    assert "mup: mean |activation|" in result.output and "sp: mean |activation|" in result.output
    assert result.output.count("log-log slope") == 2
