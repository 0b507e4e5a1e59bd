"""Compare implementation techniques for the compiled fast path on one
kernel: the frame parser + basic.deliver decoder (``kernel.py``).

Builds, in a temporary directory:

- ``kernel.py`` compiled with mypyc (the same typed source CPython runs);
- ``_speedups_kernel.c``, hand-written C against the stable API, with the
  compiler flags a setuptools build uses (-O2 here; -O3 as well);

then times ``parse_deliveries`` on one buffer of N deliveries for each,
beside CPython running ``kernel.py`` and the package's own pure-Python
path (``FrameBuffer`` + the method and property decoders).  Every
technique must return the same deliveries.  Prints ns per delivery
(process CPU time, best of R) and the size of each built module.

    python bench/speedups/compare.py [-n 20000] [-r 7]
"""
import argparse
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)


def frame(type_, channel, payload):
    return struct.pack('>BHI', type_, channel, len(payload)) + payload + \
        b'\xce'


def shortstr(s):
    b = s.encode()
    return bytes([len(b)]) + b


def delivery(i, body, frame_max=131072):
    method = struct.pack('>HH', 60, 60) + shortstr('ctag-1') + \
        struct.pack('>QB', i, 0) + shortstr('') + shortstr('bench.q')
    flags = (1 << 15) | (1 << 12) | (1 << 11) | (1 << 7) | (1 << 6)
    props = shortstr('application/json') + bytes([2, 0]) + \
        shortstr('msg-%d' % i) + struct.pack('>Q', 1700000000)
    header = struct.pack('>HHQH', 60, 0, len(body), flags) + props
    out = frame(1, 1, method) + frame(2, 1, header)
    step = frame_max - 8
    for k in range(0, len(body), step):
        out += frame(3, 1, body[k:k + step])
    return out


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_c(tmp, opt, *flags):
    inc = sysconfig.get_paths()['include']
    suffix = sysconfig.get_config_var('EXT_SUFFIX')
    out = os.path.join(tmp, 'c%s%s' % (opt, ''.join(flags)))
    os.makedirs(out)
    target = os.path.join(out, '_speedups_kernel' + suffix)
    subprocess.run(['cc', '-shared', '-fPIC', '-%s' % opt, '-Wall',
                    '-Werror'] + list(flags) + [
                    '-I', inc, os.path.join(HERE, '_speedups_kernel.c'),
                    '-o', target], check=True)
    return load(target, '_speedups_kernel'), os.path.getsize(target)


def build_mypyc(tmp):
    out = os.path.join(tmp, 'mypyc')
    os.makedirs(out)
    src = os.path.join(out, 'kernel.py')
    shutil.copy(os.path.join(HERE, 'kernel.py'), src)
    mypyc = os.path.join(os.path.dirname(sys.executable), 'mypyc')
    subprocess.run([mypyc, 'kernel.py'], cwd=out, check=True,
                   stdout=subprocess.DEVNULL)
    os.remove(src)
    sys.path.insert(0, out)
    try:
        import kernel as compiled   # the built extension
    finally:
        sys.path.remove(out)
    assert compiled.__file__.endswith(sysconfig.get_config_var(
        'EXT_SUFFIX')), compiled.__file__
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
               if f.endswith('.so'))
    del sys.modules['kernel']
    return compiled, size


def package_path(buf):
    """The package's path: FrameBuffer, then the deliver and
    content-header decoders (no channel dispatch); with the compiled
    twins it has, or pure with AMQP_NO_SPEEDUPS=1."""
    from amqp import spec
    from amqp.method_framing import FrameBuffer
    from amqp.serialization import decode_header_frame_payload, loads
    fmt = spec.args_of(spec.Basic.Deliver)
    fb = FrameBuffer(131072)
    fb.feed(buf)
    out = []
    while True:
        f = fb.next_frame()
        if f is None:
            return out
        _, channel, payload = f
        args, _ = loads(fmt, payload, 4)
        _, body_size, props = decode_header_frame_payload(
            fb.next_frame()[2])
        body = fb.next_frame()[2] if body_size else b''
        out.append((channel, args[0], args[1], args[2], args[3], args[4],
                    props, body))


def best(fn, arg, repeat):
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn(arg)
        times.append(time.process_time() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('-n', type=int, default=20000)
    ap.add_argument('-r', '--repeat', type=int, default=7)
    ap.add_argument('--size', type=int, default=100)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='amqp-speedups-compare-')
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp):
    import amqp
    interpreted = load(os.path.join(HERE, 'kernel.py'), 'kernel_py')
    c2, c2_size = build_c(tmp, 'O2')
    c3, c3_size = build_c(tmp, 'O3')
    cf, cf_size = build_c(tmp, 'O2', '-DAMQP_FULL_API')
    cn, cn_size = build_c(tmp, 'O2', '-DAMQP_NO_CACHE')
    mypyc_mod, mypyc_size = build_mypyc(tmp)
    body = bytes(range(256)) * (args.size // 256 + 1)
    body = body[:args.size]
    buf = b''.join(delivery(i, body) for i in range(args.n))
    expected = interpreted.parse_deliveries(buf)
    candidates = [
        ('package path, speedups %s' % (
            'on' if amqp.SPEEDUPS else 'off (AMQP_NO_SPEEDUPS)'),
         package_path, None),
        ('kernel.py, CPython', interpreted.parse_deliveries, None),
        ('kernel.py, mypyc', mypyc_mod.parse_deliveries, mypyc_size),
        ('C, stable API, -O2', c2.parse_deliveries, c2_size),
        ('C, stable API, -O3', c3.parse_deliveries, c3_size),
        ('C, full API (version-specific), -O2', cf.parse_deliveries,
         cf_size),
        ('C, stable API, -O2, no string cache', cn.parse_deliveries,
         cn_size),
    ]
    print('%d deliveries of %d-byte bodies (%d bytes), best of %d; '
          'python %s' % (args.n, args.size, len(buf), args.repeat,
                         sys.version.split()[0]))
    print('%-44s %12s %10s %12s' % ('technique', 'ns/delivery', 'vs C -O2',
                                    'module size'))
    rows = []
    for name, fn, size in candidates:
        got = fn(buf)
        assert got == expected, name
        rows.append((name, best(fn, buf, args.repeat) / args.n * 1e9, size))
    base = rows[3][1]
    for name, ns, size in rows:
        print('%-44s %12.0f %9.1fx %12s' % (
            name, ns, ns / base, '%d KB' % (size // 1024) if size else '-'))


if __name__ == '__main__':
    main()
