"""Run-directory helpers."""

from explora.runs.rundir import frames_to_success


def test_frames_to_success_uses_a_trailing_window_of_episodes():
    episodes = [(10 * i, 0.0, 5, 0.0) for i in range(10)]
    episodes += [(100 + 10 * i, 1.0, 5, 1.0) for i in range(10)]
    # window 4 at 0.75: three successes in the last four first happen at the 3rd success
    assert frames_to_success(episodes, threshold=0.75, window=4) == 120
    assert frames_to_success(episodes, threshold=1.0, window=4) == 130
    assert frames_to_success(episodes[:10], threshold=0.5, window=4) is None
    assert frames_to_success(episodes, window=100) is None  # fewer episodes than the window
