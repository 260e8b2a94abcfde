"""What the client scripts share: a check that stops at the first wrong answer, naming it, and
the closing line the Rust test looks for."""
import sys

count = 0


def check(what, got, expected):
    """Exits non-zero unless `got` equals `expected`."""
    global count
    if got != expected:
        sys.exit(f"FAILED {what}: got {got!r}, expected {expected!r}")
    count += 1


def report(client):
    """Prints how many checks passed."""
    print(f"{client}: {count} checks passed")
