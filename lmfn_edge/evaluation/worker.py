"""One bench worker: ``python -m lmfn_edge.evaluation.worker SPEC``.

:func:`lmfn_edge.evaluation.latency.run_bench` starts one fresh process per runtime, job and
round (so no runtime warms another's caches or shares its allocator), with ``SPEC`` the JSON
:func:`lmfn_edge.evaluation.latency.worker_spec` writes: the runtime, the job, the artifact and
the timing options. The worker loads
that one runtime, times it (:func:`lmfn_edge.evaluation.latency.worker`) and prints
``{"median_ms", "peak_rss_mb"}`` as its last line.
"""

from __future__ import annotations

import json
import sys

from .latency import WORKER_FIELDS, BenchConfig, worker

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from ..metadata import parse_json

    (text,) = sys.argv[1:] if argv is None else argv
    data = parse_json(text, "worker spec", 64 << 10, 2)
    config = BenchConfig(**{name: data[name] for name in WORKER_FIELDS}, jobs=(data["job"],))
    print(json.dumps(worker(data["runner"], data["job"], data["artifact"], config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
