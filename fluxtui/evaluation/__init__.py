"""`fluxtui evaluate`: labelled attack and benign scenarios (demo/) run under the real engine,
scored for rules alone, the anomaly model alone, and both. Nothing here imports textual."""
