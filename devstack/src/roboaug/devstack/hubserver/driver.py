"""Run one `roboaug.worker.hub` call in a fresh process, so huggingface_hub reads its environment
(HF_HUB_DISABLE_XET, HF_ENDPOINT) at import time exactly as the worker container does.

    python -m roboaug.devstack.hubserver.driver upload FOLDER REPO_ID MESSAGE
    python -m roboaug.devstack.hubserver.driver download DATASET_ID DEST

The token comes from HF_TOKEN (through hub.token_from_env, like the worker). Prints one JSON line
on stdout: {"result": ..., "xet_available": bool}; a WorkerError prints its one line on stderr
and exits with its code, like the worker's entry point.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from roboaug.api.models import DatasetRef
    from roboaug.worker import hub
    from roboaug.worker.errors import WorkerError

    xet = hub.xet_available()
    try:
        if argv[0] == "upload":
            result = hub.upload(Path(argv[1]), argv[2], hub.token_from_env(), argv[3])
        elif argv[0] == "download":
            result = str(hub.download(DatasetRef.parse(argv[1]), Path(argv[2]), hub.token_from_env()))
        else:
            print(f"unknown command {argv[0]!r}", file=sys.stderr)
            return 2
    except WorkerError as exc:
        print(exc.line(), file=sys.stderr, flush=True)
        return int(exc.code)
    print(json.dumps({"result": result, "xet_available": xet}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
