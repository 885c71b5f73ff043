"""A local Hugging Face Hub test server for the real `huggingface_hub` client.

`LocalHub` (server.py) runs a FastAPI app under uvicorn on 127.0.0.1 in a thread, over a
git-less store (store.py) of files per commit. `fixtures.py` holds the pytest fixtures.
Refs (branches, tags), branch and tag create/delete, commits and reads at any branch or sha, history,
server-side copies (CommitOperationCopy) and private repos answer as on the Hub (server.py says
who sees what and which status each refusal gets). It speaks the classic protocol only (preupload, LFS batch with basic transfer, NDJSON commit,
resolve with a CDN-style redirect for LFS files); it does not offer Xet, so its xet token
routes answer 404.
"""

from .server import OTHER_TOKEN, READ_TOKEN, WRITE_TOKEN, LocalHub  # noqa: F401
from .store import HubStore, StoreError  # noqa: F401
