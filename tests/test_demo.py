"""`make demo` does real work: the Chamfer fit converges."""

from lightning_pc import demo


def test_demo_fit_reduces_chamfer_distance(capsys):
    last = demo.main(["--points", "256", "--steps", "60"])
    out = capsys.readouterr().out
    first = float(out.split("chamfer ")[-1].split(" ->")[0])
    assert last < 0.2 * first
