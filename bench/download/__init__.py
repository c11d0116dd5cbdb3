"""The download benchmark: `modelsync sync` beside its peers and the raw limits.

    make bench                      (python -m bench.download)
    python -m bench.download --quick        (small sizes, one round: the test's run)

Every tool is a child process on the same two cores as the storage server it reads
from; every row is the median of ``--rounds`` rounds, with the order of the tools
rotated between rounds so that no tool always runs on a cold or a warm server.

- datasets.py  the revisions (1,000 x 100 KB, 200 x 1 MB, LLM-shaped, one shard
               changed, one large object) and their seeded bytes
- servers.py   fake-gcs-server (Go), moto (S3) and Azurite, each on loopback
- runs.py      one measured child: wall, CPU of the tool and of the server, peak RSS
- tools.py     the command of each tool: modelsync, rclone, s5cmd, gcsfs, KServe's
               storage initializer, `curl --parallel` (raw limit), write + fsync
               (durable-write limit)
- latency.py   a proxy that delays every request, for the concurrency sweep
- report.py    medians, ratios, the table and the targets
"""
