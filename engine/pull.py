"""``diffill pull ORG/NAME``: fetch a released diffusion coder from the Hugging Face Hub and check that it loads.

The one place Diffill touches the network (nothing is downloaded at run time). Only what the engine reads comes
down -- ``config.json``, the tokenizer files, ``*.safetensors`` and their index, never ``.bin``/``.pt`` pickles --
through ``huggingface_hub``: the revision is resolved to a commit first (so a missing repository, revision or
network is one clear line), then ``snapshot_download`` fetches that commit into a plain directory, resuming
partial files, with a progress bar on stderr. ``HF_ENDPOINT`` (a mirror) and ``HF_TOKEN`` (gated or private
repositories) are read by ``huggingface_hub`` itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.errors import DiffillError

# What engine.adapters reads: config, tokenizer (tokenizer.json, or Dream's vocab.json + merges.txt + added
# tokens), weights. generation_config.json is small and documents the release's own sampling defaults.
ALLOW_PATTERNS = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "*.safetensors",
    "model.safetensors.index.json",
]
MODELS_ENV = "DIFFILL_MODELS"  # where pulled models go (default ~/.cache/diffill/models)
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class PullError(DiffillError):
    """The release could not be fetched: no network, no such repository or revision, no safetensors weights."""


def default_directory(repo_id: str) -> Path:
    root = Path(os.environ.get(MODELS_ENV) or "~/.cache/diffill/models").expanduser()
    return root / repo_id


def _network_error(error: BaseException) -> bool:
    """A transport failure of whichever HTTP client this huggingface_hub uses (httpx, its fork, or requests)."""
    top = type(error).__module__.split(".")[0]
    return isinstance(error, OSError | TimeoutError) or top in {"httpx", "httpx2", "requests", "urllib3"}


def default_endpoint() -> str:
    """huggingface_hub's reading of HF_ENDPOINT (https://huggingface.co when unset)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def resolve(repo_id: str, revision: str | None, where: str) -> str:
    """The commit `revision` (default: the main branch) of `repo_id` names; PullError in one line otherwise."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi(endpoint=where).model_info(repo_id, revision=revision or "main")  # snapshot_download's default
    except GatedRepoError:
        raise PullError(f"{repo_id} is gated on {where}: accept its terms there and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise PullError(f"no repository {repo_id} on {where} (a private one needs HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise PullError(f"{repo_id} has no revision {revision!r} on {where}") from None
    except HfHubHTTPError as e:
        raise PullError(f"{where} refused {repo_id}: {str(e).splitlines()[0]}") from None
    except Exception as e:
        if _network_error(e):
            reason = type(e).__name__
            raise PullError(f"cannot reach {where} ({reason}); check the network, or set HF_ENDPOINT") from None
        raise
    if not info.sha:
        raise PullError(f"{where} gave no commit for {repo_id}@{revision or 'main'}")
    if not any(s.rfilename.endswith(".safetensors") for s in info.siblings or []):
        raise PullError(f"{repo_id} has no .safetensors weights (Diffill does not load .bin/.pt pickles)")
    return info.sha


def pull(
    repo_id: str, revision: str | None = None, directory: str | Path | None = None, endpoint: str | None = None
) -> Path:
    """Download `repo_id` at `revision` from `endpoint` (default: HF_ENDPOINT, else the Hub) into `directory`
    (default: $DIFFILL_MODELS/ORG/NAME); returns the directory."""
    if not _REPO_ID.fullmatch(repo_id):
        raise PullError(f"expected ORG/NAME (a Hugging Face model id), got {repo_id!r}")
    from huggingface_hub import snapshot_download

    where = (endpoint or default_endpoint()).rstrip("/")
    commit = resolve(repo_id, revision, where)
    target = Path(directory).expanduser() if directory else default_directory(repo_id)
    try:
        path = snapshot_download(
            repo_id, revision=commit, local_dir=target, allow_patterns=ALLOW_PATTERNS, endpoint=where
        )
    except Exception as e:
        if _network_error(e) or type(e).__name__ in {"LocalEntryNotFoundError", "HfHubHTTPError"}:
            raise PullError(f"download of {repo_id} stopped ({type(e).__name__}); run again to resume") from None
        raise
    return Path(path)
