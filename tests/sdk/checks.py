"""What the SDK scripts share: a check that stops the script at the first
failure, saying what differed, and the count of those that passed."""

passed = 0


def check(condition, what):
    """Counts `condition` as a passed check, or stops with `what`."""
    global passed
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    passed += 1
