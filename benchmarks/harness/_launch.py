"""Tiny launcher: fork+exec a command, wait for it, write its peak RSS (KiB) to a file (and
its CPU seconds to the same name + ``.cpu``).

Started as ``python -I -S _launch.py RUSAGE_FILE -- CMD ...``. Measuring through this small
process matters: Linux carries a process's RSS high-water mark across ``exec``, so a runner
forked straight from the (large) harness would report at least the harness's own RSS.
Standard library only, no site imports, so its own footprint is a few MB.
"""

import os
import sys


def main() -> int:
    out, sep, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    if sep != "--" or not cmd:
        sys.stderr.write("usage: _launch.py RUSAGE_FILE -- CMD ...\n")
        return 2
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, rusage = os.wait4(pid, 0)
    with open(out, "w") as f:
        f.write(str(rusage.ru_maxrss))
    with open(out + ".cpu", "w") as f:  # user + system CPU seconds, reaped descendants included
        f.write(repr(rusage.ru_utime + rusage.ru_stime))
    return os.waitstatus_to_exitcode(status) & 0xFF


if __name__ == "__main__":
    sys.exit(main())
