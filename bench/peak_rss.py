"""Run a command and print the peak RSS (MiB) of that process itself, from /proc/<pid>/status VmHWM.

`/usr/bin/time -f %M` would also count children it waited for, such as Prefect's ephemeral API
server, which is not airlift's own memory. Usage: peak_rss.py OUTFILE CMD...
"""

import subprocess
import sys
import time

out, cmd = sys.argv[1], sys.argv[2:]
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
peak = 0
while proc.poll() is None:
    try:
        with open(f"/proc/{proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    except FileNotFoundError:
        break
    time.sleep(0.05)
with open(out, "w") as handle:
    handle.write(str(peak))
sys.exit(proc.returncode)
