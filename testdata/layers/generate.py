#!/usr/bin/env python3
"""Generate the layer-apply corpus in this directory (see README.md for each file's expectation).

Usage: python3 testdata/layers/generate.py   (rewrites every corpus file; output is deterministic)

Escapes never aim at real system files: absolute targets use the made-up path
/kiln-corpus-escape, so a broken applier creates that (the tests look for it) instead of
overwriting /etc. Relative escapes aim at ../sentinel, a directory the tests place next to the
apply root.
"""

import gzip
import io
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
MTIME = 1_700_000_000
ESCAPE = "/kiln-corpus-escape"


def info(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, link="", pax=None):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = ""
    ti.mtime = MTIME
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    if pax:
        ti.pax_headers = dict(pax)
    return ti, data


def write(name, entries, fmt=tarfile.PAX_FORMAT, compress=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in entries:
            tar.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    raw = buf.getvalue()
    if compress:
        raw = gzip.compress(raw, compresslevel=9, mtime=0)
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(raw)


def d(name, mode=0o755, **kw):
    return info(name, tarfile.DIRTYPE, mode=mode, **kw)


def f(name, data=b"x\n", **kw):
    return info(name, tarfile.REGTYPE, data=data, **kw)


def sym(name, target):
    return info(name, tarfile.SYMTYPE, mode=0o777, link=target)


def hard(name, target):
    return info(name, tarfile.LNKTYPE, link=target)


def main():
    # --- malicious ---------------------------------------------------------------------------
    write("dotdot-file.tar", [f("../sentinel/pwned", b"pwned\n")])
    write("dotdot-nested.tar", [d("a/"), f("a/../../sentinel/pwned", b"pwned\n")])
    write("absolute-file.tar", [f(ESCAPE + "-file", b"contained\n")])
    write(
        "symlink-then-file.tar",
        [d(ESCAPE.lstrip("/") + "/"), sym("link", ESCAPE), f("link/passwd", b"pwned\n")],
    )
    write("symlink-relative-escape.tar", [sym("link", "../../../../sentinel"), f("link/pwned", b"pwned\n")])
    write("hardlink-absolute.tar", [hard("passwd", "/etc/passwd")])
    write("hardlink-dotdot.tar", [hard("secret", "../sentinel/secret")])
    write("hardlink-through-symlink.tar", [sym("link", "/etc"), hard("passwd", "link/passwd")])
    write(
        "symlink-loop.tar",
        [sym("loop1", "loop2"), sym("loop2", "loop1"), f("loop1/pwned", b"pwned\n")],
    )
    write("symlink-self-loop.tar", [sym("self", "self"), f("self/pwned", b"pwned\n")])
    write(
        "symlink-replaces-dir.tar",
        [d("d/"), f("d/f", b"first\n"), sym("d", "../../sentinel"), f("d/pwned", b"pwned\n")],
    )
    write(
        "symlink-replaces-dir-absolute.tar",
        [
            d(ESCAPE.lstrip("/") + "/"),
            d("d/"),
            f("d/f", b"first\n"),
            sym("d", ESCAPE),
            f("d/pwned", b"contained\n"),
        ],
    )
    write("whiteout-dotdot.tar", [d("a/"), f("a/.wh...")])
    write("whiteout-dot.tar", [d("a/"), f("a/.wh..")])
    write("whiteout-empty.tar", [d("a/"), f("a/.wh.")])
    write("whiteout-parent-path.tar", [f("../.wh.sentinel")])
    write("overlay-xattr.tar", [d("dir/", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"})])

    # A regular file that declares 8 GiB but whose stream ends after 1 KiB.
    huge = tarfile.TarInfo("huge")
    huge.size = 8 << 30
    huge.mtime = MTIME
    with open(os.path.join(HERE, "huge-size-truncated.tar"), "wb") as out:
        out.write(huge.tobuf(format=tarfile.GNU_FORMAT))
        out.write(b"\0" * 1024)

    # Tar bomb: 3000 empty files (gzip makes the file tiny).
    write("many-entries.tar.gz", [f(f"bomb/{i:05}", b"") for i in range(3000)], compress=True)
    # One entry whose PAX header carries 4 MiB of records (the parser would hold it in memory).
    write("pax-huge-header.tar.gz", [f("big-pax", pax={"comment": "A" * (4 << 20)})], compress=True)

    # --- benign references -------------------------------------------------------------------
    long_name = "deep/" + "n" * 150 + "/" + "f" * 120
    write(
        "benign-basic.tar",
        [
            d("./"),
            d("bin/"),
            f("bin/tool", b"#!/bin/sh\necho hi\n", mode=0o4755),
            sym("bin/sh", "tool"),
            hard("bin/tool-link", "bin/tool"),
            d("deep/"),
            d("deep/" + "n" * 150 + "/"),
            f(long_name, b"long\n"),
            d("home/", mode=0o755),
            d("home/user/", mode=0o750, uid=1000, gid=1000),
            f("home/user/notes", b"notes\n", mode=0o600, uid=1000, gid=1000),
            info("fifo", tarfile.FIFOTYPE, mode=0o640),
            info("null", tarfile.CHRTYPE, mode=0o666),
            d("shared/", mode=0o2775, uid=0, gid=100),
            d("tmp/", mode=0o1777),
            f("xattr-file", b"x\n", pax={"SCHILY.xattr.user.kiln": "yes"}),
        ],
    )
    # the null device needs major 1 minor 3: patch the TarInfo fields in a second pass
    rewrite_device("benign-basic.tar", "null", 1, 3)
    write("benign-gnu-longname.tar", [d("g/"), f("g/" + "L" * 200, b"gnu\n")], fmt=tarfile.GNU_FORMAT)
    write(
        "benign-whiteouts.tar",
        [
            d("dir/"),
            f("dir/-early", b"same layer, sorts before the opaque marker\n"),
            f("dir/.wh..wh..opq", b""),
            f("dir/new", b"new\n"),
            f(".wh.gone", b""),
            f(".wh..wh.plnk", b""),
        ],
    )


def rewrite_device(name, member, major, minor):
    path = os.path.join(HERE, name)
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]
    for m, _ in members:
        if m.name == member:
            m.devmajor, m.devminor = major, minor
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m, data in members:
            tar.addfile(m, io.BytesIO(data) if m.isfile() else None)
    with open(path, "wb") as out:
        out.write(buf.getvalue())


if __name__ == "__main__":
    main()
