"""Thin actors over the official `kaggle` client (imported lazily: it authenticates at import time).

Each function performs one Kaggle action and maps every failure to a KaggleError with one line: no credentials,
HTTP 401/403/404/5xx, connection refused, and a push answered HTTP 200 with an `error` field. The client's own
prints are captured, never shown, and nothing here writes or prints a credential.
"""

import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from paddy.core import atomic, lock
from paddy.core.errors import KaggleError
from paddy.data import competition
from paddy.ensemble.log import (
    DEFAULT_LOG,
    append_log,
    read_log,
    same_file,
    write_cv_plot,
    write_log,
    written_fields,
)
from paddy.ensemble.submission import check_submission_file, data_vocab
from paddy.kaggle import kernels
from paddy.kaggle.cache import cache_ref, stage_cache
from paddy.kaggle.kit import KIT_DATASET, STAGE_MARKER, check_stage, package_kit
from paddy.kaggle.names import check_competition

DEFAULT_STAGE = Path(".whl") / "kit"
CACHE_STAGE = "cache"  # beside the kit's stage: hard links to the array cache's files and its dataset metadata
PUSHED_FILE = "pushed.json"  # beside the stage: {dataset ref: digest of the wheels last sent}
SECRET_VARIABLES = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")
VERBOSE_VARIABLES = ("VERBOSE", "VERBOSE_OUTPUT")
NO_CREDENTIALS = ("no Kaggle credentials: set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, "
                  "or put kaggle.json in {config_dir} (or set KAGGLE_CONFIG_DIR to the folder that holds it)")
DATASET_READY = ("ready",)


def redact(text: object) -> str:
    """`text` with any credential from the environment replaced by ***."""
    text = str(text)
    for name in SECRET_VARIABLES:
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def http_error_line(what: str, status: int, detail: str = "", competition_slug: str | None = None) -> str:
    """The one line a Kaggle HTTP failure becomes: what failed, what Kaggle said, what to do."""
    said = f" ({detail})" if detail else ""
    if status == 401:
        return (f"{what}: Kaggle rejected the credentials (HTTP 401){said}; make a new token at "
                "https://www.kaggle.com/settings and set KAGGLE_API_TOKEN (or KAGGLE_USERNAME/KAGGLE_KEY)")
    if status == 403:
        rules = (f"accept the competition rules at https://www.kaggle.com/competitions/{competition_slug}/rules"
                 if competition_slug else "check you own it, and accept the competition rules if one is involved")
        return f"{what}: Kaggle refused (HTTP 403 Forbidden){said}; {rules}"
    if status == 404:
        return f"{what}: Kaggle found no such thing (HTTP 404){said}; check the user, slug and competition names"
    if status == 429:  # Kaggle's rate limit, and its daily submission limit
        return (f"{what}: Kaggle says too many requests (HTTP 429){said}; wait (until tomorrow for the daily "
                "submission limit) and try again")
    if status >= 500:
        return f"{what}: Kaggle failed (HTTP {status}, a server error){said}; try again in a few minutes"
    return f"{what}: Kaggle refused the request (HTTP {status}){said}; check the arguments"


def _detail(response):
    try:
        message = response.json().get("message", "")
    except ValueError:
        message = response.text
    return " ".join(redact(message).split())[:200]


def _http_error_of(error):
    while error is not None:
        if isinstance(error, requests.HTTPError) and error.response is not None:
            return error
        error = error.__context__
    return None


@contextlib.contextmanager
def kaggle_errors(what: str, competition_slug: str | None = None) -> Iterator[None]:
    """Run client calls with their prints captured and their failures raised as one-line KaggleErrors."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except KaggleError:
        raise
    except (KeyError, TypeError) as error:  # kagglesdk meets a field or enum value newer than itself
        said = " ".join(redact(f"{type(error).__name__}: {error}").split())[:200]
        raise KaggleError(f"{what}: this kaggle client cannot read Kaggle's answer ({said}); "
                          "pip install -U kaggle") from None
    except requests.ConnectionError:
        raise KaggleError(f"{what}: cannot reach Kaggle (connection refused or no network); check the network "
                          "and any HTTP(S)_PROXY setting") from None
    except (requests.RequestException, ValueError) as error:
        http = _http_error_of(error)
        if http is None:
            raise KaggleError(f"{what}: {' '.join(redact(error).split())[:300]}") from None
        line = http_error_line(what, http.response.status_code, _detail(http.response), competition_slug)
        raise KaggleError(line) from None


def kaggle_client() -> Any:
    """An authenticated KaggleApi from the official client; KaggleError when no credentials are found."""
    verbose = [name for name in VERBOSE_VARIABLES if os.environ.get(name)]
    if verbose:
        # The client then prints every request with its Authorization header.
        raise KaggleError(f"{', '.join(verbose)} is set: the kaggle client would print your credentials; unset it")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # `import kaggle` signs in and prints a help page on failure
            import kaggle  # noqa: F401
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as error:
        raise KaggleError(f"the kaggle client is not importable ({error}); pip install 'kaggle>=2.2' six") from None
    api = KaggleApi()
    with kaggle_errors("signing in to Kaggle"):
        try:
            api.authenticate()
        except SystemExit:
            raise KaggleError(NO_CREDENTIALS.format(config_dir=KaggleApi.config_dir)) from None
    return api


def push_kernel(folder: str | Path, api: Any = None) -> dict:
    """Push one rendered kernel folder; returns {ref, url, version}. An `error` in an HTTP 200 answer is a failure."""
    meta = kernels.read_kernel_folder(folder)
    api = api or kaggle_client()
    competitions = meta.get("competition_sources") or [None]
    with kaggle_errors(f"pushing kernel {meta['id']}", competitions[0]):
        response = api.kernels_push(str(folder))
    if response is None or response.error:
        said = redact(getattr(response, "error", "") or "no answer")
        raise KaggleError(f"pushing kernel {meta['id']}: Kaggle answered with an error: {said}")
    rejected = [*response.invalid_dataset_sources, *response.invalid_competition_sources,
                *response.invalid_kernel_sources]
    if rejected:
        raise KaggleError(f"kernel {meta['id']} was pushed but Kaggle rejected its sources {', '.join(rejected)}; "
                          "check they exist and that you accepted the competition rules")
    return {"ref": meta["id"], "url": response.url, "version": response.version_number}


def gpu_quota(api: Any = None) -> dict:
    """This week's GPU quota from Kaggle (the client's quota_view): hours used, total, remaining, and refresh time."""
    api = api or kaggle_client()
    with kaggle_errors("reading your GPU quota"):
        response = api.quota_view()
    quota = response.gpu_quota
    if quota is None:
        raise KaggleError("reading your GPU quota: Kaggle sent no GPU quota; verify your phone number at "
                          "https://www.kaggle.com/settings to get GPU hours")
    used = quota.time_used.total_seconds() / 3600
    total = quota.total_time_allowed.total_seconds() / 3600
    refresh = response.quota_refresh_time.isoformat() if response.quota_refresh_time else ""
    return {"used_h": round(used, 2), "total_h": round(total, 2), "remaining_h": round(max(0.0, total - used), 2),
            "refresh_at": refresh}


def kernel_status(slug: str, api: Any = None) -> dict:
    """The latest run's status of kernel USER/SLUG: {ref, status, failure_message}."""
    api = api or kaggle_client()
    with kaggle_errors(f"status of kernel {slug}"):
        response = api.kernels_status(slug)
    return {"ref": slug, "status": response.status.name.lower(), "failure_message": response.failure_message or ""}


def kernel_output(slug: str, out: str | Path, api: Any = None) -> list:
    """Download the outputs of kernel USER/SLUG into the new folder `out` (all or nothing); returns the files."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise KaggleError(f"{out} is not empty: give kernel output a new or empty --out folder")
    api = api or kaggle_client()
    with atomic.atomic_dir(out) as tmp, kaggle_errors(f"downloading the output of kernel {slug}"):
        files, _ = api.kernels_output(slug, str(tmp), force=True, quiet=True)
        log = Path(tmp) / f"{api.parse_kernel_string(slug)[1]}.log"  # the client always writes the session log
        if not [f for f in files if Path(f) != log]:
            raise KaggleError(f"kernel {slug} has no output files yet; wait until paddy kernels status {slug} "
                              "says complete")
    return [out / Path(f).relative_to(tmp) for f in files]


def dataset_status(ref: str, api: Any = None) -> str | None:
    """The status of dataset USER/SLUG ("ready", ...), or None when Kaggle has no such dataset (HTTP 404)."""
    api = api or kaggle_client()
    with kaggle_errors(f"status of dataset {ref}"):
        try:
            return api.dataset_status(ref)
        except requests.HTTPError as error:
            if error.response is not None and error.response.status_code == 404:
                return None
            raise


def send_dataset(folder: Path, ref: str, exists: bool, notes: str, api: Any = None) -> None:
    """Create dataset `ref` from `folder`, or add a version to it when it exists; returns Kaggle's ref."""
    api = api or kaggle_client()
    action = "adding a version to" if exists else "creating"
    with kaggle_errors(f"{action} dataset {ref}"):
        if exists:
            response = api.dataset_create_version(str(folder), notes, quiet=True, ignore_patterns=[STAGE_MARKER])
        else:
            response = api.dataset_create_new(str(folder), public=False, quiet=True, ignore_patterns=[STAGE_MARKER])
    if response.error:
        raise KaggleError(f"{action} dataset {ref}: Kaggle answered with an error: {redact(response.error)}")
    return response.ref or ref


def wait_dataset_ready(ref: str, timeout_s: float = 300.0, poll_s: float = 5.0, api: Any = None) -> None:
    """Poll dataset `ref` until Kaggle has processed it, so kernels pushed next can mount it."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = dataset_status(ref, api)
        if status in DATASET_READY:
            return status
        if time.monotonic() >= deadline:
            raise KaggleError(f"dataset {ref} is still {status or 'missing'} after {timeout_s:.0f} s; "
                              "run paddy kernels push again in a minute")
        time.sleep(poll_s)


def send_kit(owner: str, stage: str | Path = DEFAULT_STAGE, with_deps: bool = False, ready_timeout_s: float = 300.0,
             api: Any = None) -> dict:
    """Pack the kit's wheels as dataset <owner>/paddy-kit: create it, add a version when it changed, else skip."""
    api = api or kaggle_client()
    stage = check_stage(stage)  # one line for `--stage .` or someone's folder, before the lock is made beside it
    with lock.hold(stage, "kit staging folder"):  # two pushes would rebuild one folder under each other
        return _send_kit_locked(owner, stage, with_deps, ready_timeout_s, api)


def _send_kit_locked(owner: str, stage: Path, with_deps: bool, ready_timeout_s: float, api: Any) -> dict:
    meta, digest = package_kit(owner, stage, with_deps=with_deps)
    ref, record_path = meta["id"], stage.parent / PUSHED_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    status = dataset_status(ref, api)
    if status is not None and record.get(ref) == digest:
        return {"ref": ref, "action": "unchanged", "digest": digest}
    send_dataset(stage, ref, exists=status is not None, notes=f"paddy-kit wheels {digest}", api=api)
    atomic.write_json(record_path, {**record, ref: digest})
    wait_dataset_ready(ref, ready_timeout_s, api=api)
    return {"ref": ref, "action": "versioned" if status is not None else "created", "digest": digest}


def send_cache(owner: str, cache: str | Path, stage: str | Path, ready_timeout_s: float = 300.0,
               api: Any = None) -> dict:
    """Send the array cache `cache` as private dataset <owner>/paddy-cache-...: create it, add a version when its
    content changed since the last push, else skip (staged in `stage` as hard links, the cache left untouched)."""
    api = api or kaggle_client()
    meta, digest = stage_cache(owner, cache, stage)
    ref, record_path = meta["id"], Path(stage).parent / PUSHED_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    status = dataset_status(ref, api)
    if status is not None and record.get(ref) == digest:
        return {"ref": ref, "action": "unchanged", "digest": digest}
    send_dataset(Path(stage), ref, exists=status is not None, notes=f"paddy array cache {digest}", api=api)
    atomic.write_json(record_path, {**record, ref: digest})
    wait_dataset_ready(ref, ready_timeout_s, api=api)
    return {"ref": ref, "action": "versioned" if status is not None else "created", "digest": digest}


def sources_pending(meta: dict, api: Any) -> list:
    """The kernel_sources of a kernel that have not completed a run yet, as 'ref (status)' strings."""
    pending = []
    for ref in meta.get("kernel_sources") or []:
        with kaggle_errors(f"status of kernel {ref}"):
            try:  # the client turns 401/403 into a ValueError (mapped by kaggle_errors); 404 stays an HTTPError
                status = api.kernels_status(ref).status.name.lower()
            except requests.HTTPError as error:
                if error.response is None or error.response.status_code != 404:
                    raise
                status = "not pushed"
        if status != "complete":
            pending.append(f"{ref} ({status})")
    return pending


def push_kernels(folders: list, stage: str | Path = DEFAULT_STAGE, with_deps: bool = False,
                 ready_timeout_s: float = 300.0, api: Any = None, cache: str | Path | None = None,
                 before_send: Callable | None = None) -> dict:
    """Send the kit dataset (and the array cache `cache`, when given), then each kernel; a kernel whose
    kernel_sources have not completed waits (not pushed).

    `before_send(api)` runs once every folder and the signed-in user are checked, before anything is sent (the
    CLI checks the GPU quota there).
    """
    folders = sorted((Path(f) for f in folders), key=lambda f: bool(kernels.read_kernel_folder(f)["kernel_sources"]))
    metas = [kernels.read_kernel_folder(f) for f in folders]  # every folder checked before anything is sent
    owners = sorted({m["id"].split("/")[0] for m in metas})
    if len(owners) != 1:
        raise KaggleError(f"these kernels belong to several users ({', '.join(owners)}); push one user's at a time")
    kit = f"{owners[0]}/{KIT_DATASET}"
    missing = [m["id"] for m in metas if kit not in (m.get("dataset_sources") or [])]
    if missing:
        raise KaggleError(f"kernel(s) {', '.join(missing)} do not read the kit dataset {kit}; render them again")
    cache_dataset = None if cache is None else cache_ref(owners[0], cache)
    unread = [m["id"] for m in metas if cache_dataset and cache_dataset not in (m.get("dataset_sources") or [])]
    if unread:  # the upload would buy nothing: these kernels decode the competition's JPEGs
        raise KaggleError(f"kernel(s) {', '.join(unread)} do not read the cache dataset {cache_dataset}; render "
                          f"them with paddy kernels render PLAN --cache {cache}")
    api = api or kaggle_client()
    signed_in = str(api.get_config_value(api.CONFIG_NAME_USER) or "").lower()
    if signed_in and signed_in != owners[0]:  # Kaggle would refuse only after the wheels were uploaded
        raise KaggleError(f"these kernels belong to {owners[0]} but you are signed in as {signed_in}; "
                          f"render them for you with paddy kernels render PLAN --user {signed_in}")
    if before_send is not None:
        before_send(api)
    result = {"dataset": send_kit(owners[0], stage, with_deps, ready_timeout_s, api), "kernels": [], "waiting": []}
    if cache is not None:
        result["cache"] = send_cache(owners[0], cache, Path(stage).parent / CACHE_STAGE, ready_timeout_s, api)
    for folder, meta in zip(folders, metas):
        pending = sources_pending(meta, api)
        if pending:
            result["waiting"].append({"ref": meta["id"], "pending": pending})
        else:
            result["kernels"].append(push_kernel(folder, api))
    return result


def submit(path: str | Path, message: str, competition_slug: str = competition.COMPETITION,
           data: str | Path | None = None, log: str | Path | None = None, api: Any = None) -> dict:
    """Check a submission CSV, send it, and log it (default: log.csv beside it) with its ensemble's columns."""
    if not str(message).strip():
        raise KaggleError("a submission needs a message: -m 'what changed'")
    check_competition(competition_slug)
    if competition_slug != competition.COMPETITION and data is None:  # the built-in ids and labels are Paddy's
        raise KaggleError(f"--competition {competition_slug}: give --data, its competition folder, to check the CSV "
                          "against its sample_submission.csv and label folders")
    vocab = None if competition_slug == competition.COMPETITION else data_vocab(data)
    check_submission_file(path, data=data, vocab=vocab)
    log = Path(log) if log else Path(path).parent / "log.csv"  # where paddy ensemble logged it
    written = written_fields(read_log(log), path)  # members and validation accuracy; an unreadable log fails here
    api = api or kaggle_client()
    with kaggle_errors(f"submitting {path} to {competition_slug}", competition_slug):
        response = api.competition_submit(str(path), message, competition_slug, quiet=True)
    if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise KaggleError(f"submitting {path}: the upload to Kaggle failed; try again")
    append_log(log, {"event": "submitted", "file": str(path), "competition": competition_slug, **written,
                     "message": message, "kaggle_ref": response.ref})
    return {"ref": response.ref, "message": redact(response.message), "log": str(log)}


def list_submissions(competition_slug: str = competition.COMPETITION, api: Any = None) -> list:
    """The competition's submissions, newest first, as dicts with their public scores."""
    check_competition(competition_slug)
    api = api or kaggle_client()
    with kaggle_errors(f"listing submissions to {competition_slug}", competition_slug):
        submissions = api.competition_submissions(competition_slug) or []
    return [{"ref": str(s.ref), "date": str(s.date or ""), "file": s.file_name or "", "description":
             s.description or "", "status": s.status.name.lower(), "public_score": s.public_score or "",
             "error": s.error_description or ""}
            for s in submissions]


def fill_public_scores(frame: pd.DataFrame, submissions: list, competition_slug: str) -> pd.DataFrame:
    """A copy of the log with public_score filled from Kaggle's listing on `submitted` rows and their `written` rows."""
    frame = fill_submitted_scores(frame, submissions, competition_slug)
    scored = frame[frame["event"].eq("submitted") & frame["public_score"].notna()]
    for index, row in frame[frame["event"].eq("written")].iterrows():
        same = [score for file, score in zip(scored["file"], scored["public_score"]) if same_file(file, row["file"])]
        if same:
            frame.loc[index, "public_score"] = same[-1]
    return frame


def fill_submitted_scores(frame: pd.DataFrame, submissions: list, competition_slug: str) -> pd.DataFrame:
    """A copy of the log with public_score filled on `submitted` rows (by kaggle_ref, else by file and message)."""
    frame = frame.copy()
    if "kaggle_ref" not in frame.columns:
        frame["kaggle_ref"] = ""
    by_ref = {s["ref"]: s for s in submissions}
    by_file = {(s["file"], s["description"]): s for s in submissions}
    for index, row in frame.iterrows():
        if row["event"] != "submitted" or row["competition"] != competition_slug:
            continue
        match = by_ref.get(str(row["kaggle_ref"])) or by_file.get((Path(str(row["file"])).name, row["message"]))
        if match and match["public_score"] not in ("", None):
            frame.loc[index, "public_score"] = float(match["public_score"])
    return frame


def with_cv(submissions: list, frame: pd.DataFrame, competition_slug: str) -> list:
    """The listing with each submission's CV accuracy and std from its `submitted` log row ("" when unknown)."""
    rows = frame[frame["event"].eq("submitted") & frame["competition"].eq(competition_slug)]
    by_ref = {str(r["kaggle_ref"]): r for _, r in rows.iterrows()} if "kaggle_ref" in rows.columns else {}
    by_file = {(Path(str(r["file"])).name, r["message"]): r for _, r in rows.iterrows()}
    listed = []
    for s in submissions:
        row = by_ref.get(s["ref"])
        row = by_file.get((s["file"], s["description"])) if row is None else row
        cv = {"cv_accuracy": "", "cv_std": ""}
        if row is not None and row["cv_accuracy"] == row["cv_accuracy"]:  # NaN: an ensemble without folds
            cv = {"cv_accuracy": f"{row['cv_accuracy']:.5f}", "cv_std": f"{row['cv_std']:.5f}"}
        listed.append({**s, **cv})
    return listed


def sync_submissions(competition_slug: str = competition.COMPETITION, log: str | Path = DEFAULT_LOG,
                     api: Any = None) -> dict:
    """List the submissions with their CV from the log, fill the log's public scores, plot public vs CV.

    Returns {"submissions": the listing, newest first, "plot": the PNG's path, or None with < 3 scored rows}.
    """
    submissions = list_submissions(competition_slug, api)
    if not Path(log).is_file():
        return {"submissions": [{**s, "cv_accuracy": "", "cv_std": ""} for s in submissions], "plot": None}
    frame = fill_public_scores(read_log(log), submissions, competition_slug)
    write_log(log, frame)
    return {"submissions": with_cv(submissions, frame, competition_slug), "plot": write_cv_plot(log, frame)}
