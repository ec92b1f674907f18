"""A serving-like process for tests/access/test_log.py: count one read, flush, note that the
flush returned, compact every third flush; forever, until the test SIGKILLs it."""
import sys

from lbdask.access.log import AccessLog, compact_access
from lbdask.storage import open_location


def main(dest: str, writer: str, acked: str) -> None:
    loc = open_location(dest)
    log = AccessLog(loc, writer)
    n = 0
    while True:
        log.add(f"id{n % 5}", float(n))
        log.flush()
        with open(acked, "a") as f:
            f.write(f"{n}\n")
        n += 1
        if n % 3 == 0:
            compact_access(loc)


if __name__ == "__main__":
    main(*sys.argv[1:4])
