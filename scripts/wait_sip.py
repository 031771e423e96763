#!/usr/bin/env python3
"""Wait until a SIP server on 127.0.0.1 answers (any SIP response to an OPTIONS
over UDP), so that a load run does not start before the gateway is ready: cidgate
binds its ports only after compiling every numbering plan, a few seconds.

usage: scripts/wait_sip.py PORT [--pid PID] [--timeout SECONDS]
Exit 0 once answered; 1 when the timeout (30 s) passes or process PID ends first.
"""
import argparse
import os
import socket
import sys
import time


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--pid", type=int, help="give up when this process ends")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    me = "127.0.0.1:%d" % sock.getsockname()[1]
    probe = (
        "OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n"
        "Via: SIP/2.0/UDP %s;branch=z9hG4bKwait%d;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:wait@127.0.0.1>;tag=wait\r\n"
        "To: <sip:127.0.0.1:%d>\r\n"
        "Call-ID: wait-%d@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ) % (a.port, me, os.getpid(), a.port, os.getpid())
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if a.pid is not None and not alive(a.pid):
            sys.exit("wait_sip: process %d ended before port %d answered" % (a.pid, a.port))
        try:
            sock.sendto(probe.encode(), ("127.0.0.1", a.port))
            data, _ = sock.recvfrom(65536)
            if data.startswith(b"SIP/2.0 "):
                return
        except (socket.timeout, ConnectionRefusedError):
            pass
    sys.exit("wait_sip: nothing answered on 127.0.0.1:%d within %g s" % (a.port, a.timeout))


if __name__ == "__main__":
    main()
