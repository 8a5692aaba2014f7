"""`fluxtui replay FILE`: a recording of the headless stream played into the dashboard."""

from fluxtui.replay.reader import Damage, RecordingError
from fluxtui.replay.source import ReplaySource

__all__ = ["Damage", "RecordingError", "ReplaySource"]
