#!/usr/bin/env python3
"""A link with a fixed one-way delay between two network namespaces, in user space (tc netem
is not available on the machines this runs on): a TUN device in each namespace, and every IP
packet read from one is written to the other DELAY_MS later. Unlike a relay that terminates
TCP (examples/delay_relay.rs), every packet is delayed, TCP's SYN and SYN-ACK included, so a
TCP + TLS + WebSocket set-up pays all its round trips, as a QUIC one does.

    tun_delay.py NETNS_A NETNS_B DELAY_MS

Creates `tundly0` in NETNS_A and `tundly1` in NETNS_B (the caller gives them addresses and
brings them up), prints `ready`, and relays until killed. Needs root (setns, /dev/net/tun).
Used by benches/webtransport_setup.sh.
"""
import asyncio
import ctypes
import fcntl
import os
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000

libc = ctypes.CDLL("libc.so.6", use_errno=True)


def enter(netns):
    """Moves this thread into the named network namespace (ip netns add NAME)."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns {netns}: {os.strerror(err)}")
    os.close(fd)


def open_tun(name):
    """A TUN device (IP packets, no extra header) created in the current namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    ns_a, ns_b, delay_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    enter(ns_a)
    tun_a = open_tun("tundly0")
    enter(ns_b)
    tun_b = open_tun("tundly1")
    delay = delay_ms / 1000.0
    loop = asyncio.new_event_loop()

    def forward(src, dst):
        def readable():
            while True:
                try:
                    packet = os.read(src, 65536)
                except BlockingIOError:
                    return
                loop.call_later(delay, write, dst, packet)
        return readable

    def write(dst, packet):
        try:
            os.write(dst, packet)
        except OSError:
            pass  # the device went down: the packet is lost, as on a link

    loop.add_reader(tun_a, forward(tun_a, tun_b))
    loop.add_reader(tun_b, forward(tun_b, tun_a))
    print("ready", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
