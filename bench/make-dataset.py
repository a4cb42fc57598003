#!/usr/bin/env python3
"""A mixed dataset like a Docker stack's volumes: about 70% compressible text (SQL dumps,
application logs) and 30% random bytes (uploads, already-compressed blobs), in files from
4 KiB to 64 MiB. Deterministic for a given size.

    bench/make-dataset.py DIR GIB      # e.g. bench/make-dataset.py bench/data/mixed-1g 1
"""
import itertools
import os
import random
import sys

MIB = 1 << 20


def text(rng, size, header, make_line):
    """Lines from `make_line(rng)` after `header`, cut to exactly `size` bytes."""
    out = [header]
    total = len(header)
    while total < size:
        line = make_line(rng)
        out.append(line)
        total += len(line)
    return "".join(out).encode()[:size]


def sql_dump(rng, size):
    """pg_dump-style INSERTs with varied values: compresses about 3-4x with zstd -3."""
    statuses = ["paid", "pending", "shipped", "refunded", "cancelled"]
    first = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
             "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"]
    domains = ["example.com", "mail.test", "corp.example", "shop.test"]
    rows = itertools.count(rng.randrange(1, 10_000) + 1)

    def line(rng):
        row = next(rows)
        name = rng.choice(first)
        return (f"INSERT INTO public.orders VALUES ({row}, '{name} {rng.choice(first).title()}', "
                f"'{name}.{rng.randrange(100000)}@{rng.choice(domains)}', "
                f"{rng.randrange(100, 99999) / 100:.2f}, '2026-{rng.randrange(1, 13):02d}-"
                f"{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:"
                f"{rng.randrange(60):02d}+00', '{rng.choice(statuses)}', "
                f"'{rng.getrandbits(64):016x}');\n")

    header = ("-- PostgreSQL database dump\nSET statement_timeout = 0;\n"
              "CREATE TABLE public.orders (id bigint, customer text, email text, amount numeric,"
              " created timestamptz, status text, note text);\n")
    return text(rng, size, header, line)


def access_log(rng, size):
    """nginx-style access log lines."""
    paths = ["/", "/api/orders", "/api/orders/{}", "/login", "/static/app.{}.js", "/health",
             "/api/customers/{}", "/search?q={}"]
    agents = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/7.88.1", "kube-probe/1.29",
              "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1)", "python-requests/2.31"]
    codes = [200, 200, 200, 200, 201, 204, 301, 304, 400, 401, 404, 500]

    def line(rng):
        path = rng.choice(paths).format(rng.randrange(1_000_000))
        return (f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)} - - "
                f"[23/Nov/2026:{rng.randrange(24):02d}:{rng.randrange(60):02d}:"
                f"{rng.randrange(60):02d} +0000] \"GET {path} HTTP/1.1\" {rng.choice(codes)} "
                f"{rng.randrange(100, 90000)} \"-\" \"{rng.choice(agents)}\" "
                f"rt={rng.randrange(1, 3000) / 1000:.3f}\n")

    return text(rng, size, "", line)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root, gib = sys.argv[1], float(sys.argv[2])
    total = int(gib * 1024 * MIB)
    rng = random.Random(20261123)
    text_budget = int(total * 0.7)
    random_budget = total - text_budget
    written = 0
    # Text: 64 MiB dumps, then 4 MiB logs, then small logs.
    i = 0
    while written < text_budget:
        left = text_budget - written
        if left > 256 * MIB:
            size, path = 64 * MIB, f"{root}/db/dump-{i:03d}.sql"
            data = sql_dump(rng, size)
        elif left > 32 * MIB:
            size, path = 4 * MIB, f"{root}/logs/access-{i:03d}.log"
            data = access_log(rng, size)
        else:
            size, path = min(left, 256 << 10), f"{root}/logs/small/app-{i:04d}.log"
            data = access_log(rng, size)
        write(path, data)
        written += len(data)
        i += 1
    # Random: 32 MiB blobs, then 64 KiB uploads, then 4 KiB ones.
    done = 0
    i = 0
    while done < random_budget:
        left = random_budget - done
        if left > 64 * MIB:
            size, path = 32 * MIB, f"{root}/uploads/blob-{i:03d}.bin"
        elif left > 4 * MIB:
            size, path = 64 << 10, f"{root}/uploads/small/u-{i:05d}.bin"
        else:
            size, path = min(left, 4096), f"{root}/uploads/tiny/t-{i:05d}.bin"
        write(path, rng.randbytes(size))
        done += size
        i += 1


if __name__ == "__main__":
    main()
