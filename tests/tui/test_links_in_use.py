"""Which link values the ranking uses (typed or measured), and one key — or one flag —
to rank with the measured ones."""

from __future__ import annotations

from backend.cli import main
from omdp_tui.app import Launch, OmdpApp
from omdp_tui.screens.partitions import PartitionsScreen
from omdp_tui.widgets.step_input import StepInput
from tui.helpers import screen_text, wait_for


def _measure(ws) -> None:
    """As `l` on the devices screen stores them: glasses-phone measured at 95.6 Mbit/s."""
    ws.session.set_link_measurement(0, 95.6, 10.2)
    ws._load_links()


async def test_m_ranks_with_the_measured_link_values(fixed_workspace):
    ws = fixed_workspace
    _measure(ws)
    app = OmdpApp(Launch("workspace", prepared=ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.workspace is not None)
        await app.action_show("partitions")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionsScreen))
        screen = app.screen
        before = screen.partitions[0].total_ms
        assert "u uses: 95.6 Mbit/s 10.2 ms" in screen_text(app)
        assert "measured: – (l on screen 2)" in screen_text(app)  # the other link
        await pilot.press("u")
        await pilot.pause(0.1)
        assert (ws.links[0].bandwidth_mbps, ws.links[0].latency_ms) == (95.6, 10.2)
        assert ws.links[1].bandwidth_mbps == 100.0  # not measured: typed value kept
        assert screen.query_one("#bw-0", StepInput).value == "95.6"
        assert "= in use: 95.6 Mbit/s 10.2 ms" in screen_text(app)
        assert screen.partitions[0].total_ms != before  # ranked under the measured values
        assert ws.session.bandwidths()[0] == (95.6, 10.2)  # saved
        await pilot.press("b", "up")  # typing moves away from the measured value
        await pilot.pause(0.1)
        assert "u uses: 95.6 Mbit/s" in screen_text(app)


def test_paths_says_which_link_values_it_uses(fixed_workspace, capsys):
    ws = fixed_workspace
    _measure(ws)
    path = str(ws.session_path)
    ws.session.close()
    assert main(["paths", path, "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "link glasses-phone: 20 Mbit/s (typed), 5.0 ms (typed)" in out
    assert main(["paths", path, "-k", "2", "--measured-links", "--latency", "glasses-phone=1"]) == 0
    out = capsys.readouterr().out
    assert "link glasses-phone: 95.6 Mbit/s (measured), 1.0 ms (given)" in out
    assert "link phone-cloud: 100 Mbit/s (typed)" in out
