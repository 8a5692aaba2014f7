"""`fluxtui serve`: the dashboard in a browser (textual-serve), behind a token, one session at a
time."""
