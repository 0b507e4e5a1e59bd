"""The machine's own cost of a round trip, with no protocol at all: a
Python loop sends 46 bytes over loopback TCP (a basic.get's size) and
blocks in ``recv`` until an echo process answers; the client's user and
system CPU and the wall time per round trip are printed.

Compare it with a library's round trips (``bench/e2e.py``'s get and
confirm) to see how much of their CPU the machine takes before any
protocol work.  Where the two processes run is the caller's choice::

    python bench/pingpong.py                  # wherever the kernel puts them
    taskset -c 1 python bench/pingpong.py     # both on one CPU
"""
import argparse
import os
import resource
import socket
import time


def echo(listener: socket.socket) -> None:
    """The child: answer every receive with four times its bytes (a
    reply bigger than the request, as a get-ok is), until the peer
    closes."""
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(65536)
        if not data:
            os._exit(0)
        conn.sendall(data * 4)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('-n', type=int, default=20000,
                        help='round trips (default 20000)')
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args(argv)
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    pid = os.fork()
    if pid == 0:
        echo(listener)
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = b'x' * 46
    try:
        for _ in range(args.repeat):
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            for _ in range(args.n):
                client.sendall(request)
                got = 0
                while got < 4 * len(request):
                    got += len(client.recv(65536))
            t1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            print('per round trip: user %.1f us, system %.1f us, wall '
                  '%.1f us' % ((r1.ru_utime - r0.ru_utime) / args.n * 1e6,
                               (r1.ru_stime - r0.ru_stime) / args.n * 1e6,
                               (t1 - t0) / args.n * 1e6), flush=True)
    finally:
        client.close()
        os.waitpid(pid, 0)


if __name__ == '__main__':
    main()
