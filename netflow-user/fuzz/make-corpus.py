#!/usr/bin/env python3
"""Seeds for the fuzz targets, from the recordings in tests/fixtures:
real events (each alone, and cut short), the recordings (whole and cut),
and runs of events as the pipeline targets read them ([len u16 LE][event],
a zero length for each tick). Usage: netflow-user/fuzz/make-corpus.py"""
import gzip, os, struct, zlib

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "..", "tests", "fixtures")
corpus = os.path.join(here, "corpus")


def records(path):
    raw = open(path, "rb").read()
    body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw[12:])
    i = 0
    while i + 5 <= len(body):
        kind, n = body[i], struct.unpack_from("<I", body, i + 1)[0]
        yield kind, body[i + 5 : i + 5 + n]
        i += 5 + n


def write(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)


for fx in sorted(f for f in os.listdir(fixtures) if f.endswith(".nflw")):
    stem = fx[: -len(".nflw")]
    path = os.path.join(fixtures, fx)
    raw = open(path, "rb").read()
    write("record_reader", stem, raw)
    write("record_reader", stem + "-cut", raw[: len(raw) // 2])
    run, events = b"", []
    for kind, payload in records(path):
        if kind == 3:
            events.append(payload)
            run += struct.pack("<H", len(payload)) + payload
        elif kind == 4:
            run += struct.pack("<H", 0)
    for i, ev in enumerate(events[::25]):
        write("event_decoder", f"{stem}-{i}", ev)
        write("event_decoder", f"{stem}-{i}-cut", ev[: len(ev) // 2])
    for target in ("pipeline", "pcapng_export"):
        write(target, stem, run)
        write(target, stem + "-head", run[: len(run) // 3])
