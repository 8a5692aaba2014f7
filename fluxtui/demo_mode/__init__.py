"""`fluxtui demo`: the labelled scenarios of demo/ played as a story on the real dashboard.

No textual here: the story, the player and the stage are driven by the UI (tui/demo_narration)
through `DemoPlayer`'s commands and speak to it through `DemoNarration` events on the bus.
"""
