"""The real `kaggle` client against a local stub: pushes, dataset uploads, status, output, submissions, errors.

Each test imports `kaggle` afresh inside its own environment (the client reads KAGGLE_API_ENVIRONMENT and
KAGGLE_CONFIG_DIR when it is imported; a fresh import costs ~0.04 s, a subprocess per call ~3 s), points it at the
stub with KAGGLE_API_ENVIRONMENT=LOCALHOST plus an HTTP proxy on the stub's loopback port, and runs `paddy` in-process.
"""

import base64
import json
import socket
import sys
import zipfile

import pytest
from kaggle_stub import KaggleStub
from test_kaggle_kernels import PLAN_TOML

from paddy.cli.main import main
from paddy.core.errors import KaggleError
from paddy.core.plan import load_plan
from paddy.data.array_cache import write_array_cache
from paddy.kaggle.client import PUSHED_FILE, push_kernel
from paddy.kaggle.kernels import render_kernels

USER = "someone"
KEY = "k3y-0f-s0me0ne-7d1c9a52e4b8"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")


def _fresh_kaggle(monkeypatch):
    for name in [m for m in sys.modules if m == "kaggle" or m.startswith("kaggle.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test


def _point_at(monkeypatch, url):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, url)  # https too: a request meant for the internet meets the stub's refusal
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    _fresh_kaggle(monkeypatch)


@pytest.fixture
def stub(monkeypatch):
    server = KaggleStub(user=USER, max_requests=100, max_seconds=60).start()
    _point_at(monkeypatch, server.url)
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    yield server
    server.stop()
    assert not [r for r in server.requests if r["verb"] == "CONNECT"], "something tried to reach the internet"


@pytest.fixture
def rendered(tmp_path):
    (tmp_path / "tiny.toml").write_text(PLAN_TOML)
    return render_kernels(load_plan(tmp_path / "tiny.toml"), USER, out=tmp_path / "kernels")[0]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, out, err, *words):
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


def _assert_no_secret(stub, root, *texts):
    """The key appears in no request body, no printed text, and no file under `root` (inside wheels too)."""
    secrets = [KEY.encode(), base64.b64encode(f"{USER}:{KEY}".encode())]
    # IntrospectToken is the one call whose body is the token itself: the client asks Kaggle whose token it is.
    blobs = [r["raw"] for r in stub.requests if r["method"] != "IntrospectToken"] + [t.encode() for t in texts]
    for path in (p for p in root.rglob("*") if p.is_file()):
        blobs.append(path.read_bytes())
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as archive:
                blobs += [archive.read(name) for name in archive.namelist()]
    assert not [b for b in blobs for s in secrets if s in b]


def _submission_csv(path, label="normal"):
    ids = [f"{200001 + i}.jpg" for i in range(3469)]
    path.write_text("image_id,label\n" + "".join(f"{i},{label}\n" for i in ids))
    return path


def test_push_all_sends_the_kit_dataset_then_the_kernels(stub, rendered, tmp_path, capsys):
    stage = tmp_path / "stage" / "kit"
    code, out, err = _run(capsys, "kernels", "push", "--all", "--kernels", tmp_path / "kernels", "--stage", stage)
    assert code == 0, err
    methods = [r["method"] or r["verb"] for r in stub.requests]
    assert methods[0] == "GetAcceleratorQuotaStatistics" and "estimated GPU hours: " in out  # before any upload
    methods = methods[1:]
    create = methods.index("CreateDataset")
    assert methods[:create + 1] == ["GetDatasetStatus", "GetDatasetStatus", "StartBlobUpload", "PUT",
                                    "CreateDataset"]
    assert methods[create + 1] == "GetDatasetStatus" and methods.count("SaveKernel") == len(rendered) - 1
    wheel = next(stage.glob("*.whl"))
    assert stub.uploads["/upload/blob-1"] == wheel.read_bytes()
    body = stub.calls("CreateDataset")[0]["body"]
    assert (body["ownerSlug"], body["slug"], body["isPrivate"], body["files"]) == (
        USER, "paddy-kit", True, [{"token": "blob-token-1"}])
    saved = {r["body"]["slug"]: r["body"] for r in stub.calls("SaveKernel")}
    for folder in rendered[:-1]:  # probe and members; the ensemble waits for its members
        meta, sent = json.loads((folder / "kernel-metadata.json").read_text()), saved[f"{USER}/{folder.name}"]
        assert sent["newTitle"] == meta["title"] and sent["text"] == (folder / "kernel.py").read_text()
        assert (sent["language"], sent["kernelType"], sent["isPrivate"]) == ("python", "script", True)
        assert (sent["enableGpu"], sent["enableInternet"], sent["machineShape"]) == (True, False, "NvidiaTeslaT4")
        assert sent["competitionDataSources"] == ["paddy-disease-classification"]
        assert sent["datasetDataSources"] == [f"{USER}/paddy-kit"] and sent.get("kernelDataSources", []) == []
    assert f"{USER}/paddy-tiny-ensemble: not pushed, waiting for" in out and "(queued)" in out

    # Members complete: the ensemble goes, reading their outputs; the unchanged kit is not sent again.
    for folder in rendered[1:-1]:
        stub.kernels[f"{USER}/{folder.name}"] = "COMPLETE"
    before = len(stub.requests)
    code, out, err = _run(capsys, "kernels", "push", rendered[-1], "--stage", stage)
    # (this step fails only if someone edits paddy/ during the test: the kit then really changed)
    assert code == 0 and "dataset someone/paddy-kit: unchanged" in out, (out, err)
    later = [r["method"] for r in stub.requests[before:]]
    assert "CreateDataset" not in later and "CreateDatasetVersion" not in later and "StartBlobUpload" not in later
    ensemble = stub.calls("SaveKernel")[-1]["body"]
    assert ensemble["slug"] == f"{USER}/paddy-tiny-ensemble"
    assert ensemble["kernelDataSources"] == [f"{USER}/{f.name}" for f in rendered[1:-1]]

    # The wheels changed since the last push (as recorded): a new version of the same dataset.
    (stage.parent / PUSHED_FILE).write_text(json.dumps({f"{USER}/paddy-kit": "older"}))
    code, out, err = _run(capsys, "kernels", "push", rendered[0], "--stage", stage)
    assert code == 0 and "dataset someone/paddy-kit: versioned" in out, err
    version = stub.calls("CreateDatasetVersion")[0]["body"]
    assert (version["ownerSlug"], version["datasetSlug"]) == (USER, "paddy-kit")
    assert version["body"]["files"][0]["token"].startswith("blob-token-")
    _assert_no_secret(stub, tmp_path, out, err)


def test_quota_shows_the_weekly_gpu_hours_left(stub, capsys):
    code, out, err = _run(capsys, "kernels", "quota")
    assert code == 0, err
    assert out.strip() == "GPU quota: 20.00 h left of 30.00 h this week (10.00 h used); refreshes 2026-12-05T00:00:00"


def test_push_all_asks_for_yes_past_half_the_quota_left(stub, rendered, tmp_path, capsys):
    stub.gpu_used_s = 30 * 3600 - 0.3 * 3600  # 0.3 h left; the tiny plan's two GPU kernels take about 0.2 h
    stage = tmp_path / "stage" / "kit"
    code, out, err = _run(capsys, "kernels", "push", "--all", "--kernels", tmp_path / "kernels", "--stage", stage)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--yes" in err and "0.3 h left" in err, err
    assert "paddy-tiny-probe: about 0.1 GPU h" in out and "estimated GPU hours: 0.2 of 0.3 h left" in out
    assert not stub.calls("SaveKernel") and not stub.calls("CreateDataset")  # nothing sent
    code, out, err = _run(capsys, "kernels", "push", "--all", "--kernels", tmp_path / "kernels", "--stage", stage,
                          "--yes")
    assert code == 0 and len(stub.calls("SaveKernel")) == 2, err


def test_push_of_kernels_owned_by_another_user_is_refused_before_any_upload(stub, rendered, tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "other")  # signed in as other; the folders were rendered for someone
    stage = tmp_path / "stage" / "kit"
    code, out, err = _run(capsys, "kernels", "push", "--all", "--kernels", tmp_path / "kernels", "--stage", stage)
    _assert_one_line_error(code, out, err, "signed in as other", "--user other")
    assert [r["method"] for r in stub.requests if r["method"] not in ("IntrospectToken",)] == []
    assert not stage.exists()


def test_push_answered_200_with_an_error_field_is_an_error(stub, rendered):
    stub.fail["SaveKernel"] = (200, {"error": "Notebook not found", "ref": "", "url": ""})
    with pytest.raises(KaggleError, match="Notebook not found") as caught:
        push_kernel(rendered[1])
    assert "\n" not in str(caught.value) and stub.calls("SaveKernel")
    stub.fail["SaveKernel"] = (200, {"url": "u", "invalidCompetitionSources": ["paddy-disease-classification"]})
    with pytest.raises(KaggleError, match="rejected its sources paddy-disease-classification"):
        push_kernel(rendered[1])


def test_no_credentials_is_one_line_naming_where_the_client_looks(stub, monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    code, out, err = _run(capsys, "kernels", "status", f"{USER}/paddy-tiny-probe")
    _assert_one_line_error(code, out, err, "KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "kaggle.json")
    # The folder named is where the client looks now (KAGGLE_CONFIG_DIR, else ~/.kaggle or ~/.config/kaggle): the
    # message must not claim KAGGLE_CONFIG_DIR names it when that variable is unset.
    assert "set KAGGLE_CONFIG_DIR to the folder that holds it" in err
    assert stub.requests == []


def test_kaggle_json_and_token_credentials_work(stub, monkeypatch, tmp_path, capsys):
    stub.kernels[f"{USER}/paddy-tiny-probe"] = "RUNNING"
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    config_dir = tmp_path / "kaggle-config"
    config_dir.mkdir()
    (config_dir / "kaggle.json").write_text(json.dumps({"username": USER, "key": KEY}))
    (config_dir / "kaggle.json").chmod(0o600)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    _fresh_kaggle(monkeypatch)
    code, out, err = _run(capsys, "kernels", "status", f"{USER}/paddy-tiny-probe")
    assert (code, out) == (0, f"{USER}/paddy-tiny-probe: running\n"), err
    assert stub.requests[-1]["authorization"] == "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()

    (config_dir / "kaggle.json").unlink()
    monkeypatch.setenv("KAGGLE_API_TOKEN", KEY)
    code, out, err = _run(capsys, "kernels", "status", f"{USER}/paddy-tiny-probe")
    assert code == 0, err
    assert "IntrospectToken" in [r["method"] for r in stub.requests]
    assert stub.requests[-1]["authorization"] == f"Bearer {KEY}"
    _assert_no_secret(stub, tmp_path / "nothing-written", out, err)


def test_status_and_output_of_a_kernel(stub, tmp_path, capsys):
    ref = f"{USER}/paddy-tiny-01-resnet10t"
    stub.kernels[ref] = "COMPLETE"
    stub.outputs[ref] = {"run/result.json": b'{"error_rate": 0.5}', "run/vocab.json": b'{"label": ["a"]}'}
    code, out, err = _run(capsys, "kernels", "status", ref)
    assert (code, out) == (0, f"{ref}: complete\n"), err
    sent = stub.calls("GetKernelSessionStatus")[0]["body"]
    assert sent == {"userName": USER, "kernelSlug": "paddy-tiny-01-resnet10t"}

    code, out, err = _run(capsys, "kernels", "output", ref, "--out", tmp_path / "member")
    assert code == 0, err
    assert (tmp_path / "member" / "run" / "result.json").read_bytes() == b'{"error_rate": 0.5}'
    assert (tmp_path / "member" / "run" / "vocab.json").is_file()
    assert stub.calls("ListKernelSessionOutput")[0]["body"]["kernelSlug"] == "paddy-tiny-01-resnet10t"
    assert sorted(r["path"] for r in stub.requests if r["verb"] == "GET") == [
        f"/output/{ref}/run/result.json", f"/output/{ref}/run/vocab.json"]
    code, out, err = _run(capsys, "kernels", "output", ref, "--out", tmp_path / "member")
    _assert_one_line_error(code, out, err, "not empty")

    stub.kernels[ref] = "ERROR"
    stub.fail["GetKernelSessionStatus"] = (200, {"status": "ERROR", "failureMessage": "CUDA out of memory"})
    code, out, err = _run(capsys, "kernels", "status", ref)
    assert (code, out) == (0, f"{ref}: error: CUDA out of memory\n")


def test_output_of_a_kernel_with_no_output_files_is_an_error(stub, tmp_path, capsys):
    ref = f"{USER}/paddy-tiny-01-resnet10t"
    stub.kernels[ref] = "RUNNING"  # Kaggle lists only the session log until the run has written its files
    code, out, err = _run(capsys, "kernels", "output", ref, "--out", tmp_path / "member")
    _assert_one_line_error(code, out, err, "no output files", "paddy kernels status")
    assert not (tmp_path / "member").exists()


@pytest.mark.parametrize("status, words", [
    (401, ["HTTP 401", "KAGGLE_API_TOKEN"]),
    (403, ["HTTP 403"]),
    (404, ["HTTP 404", "slug"]),
    (429, ["HTTP 429", "too many requests", "wait"]),
    (500, ["HTTP 500", "server error"]),
    (503, ["HTTP 503", "try again"]),
])
def test_http_errors_are_one_line_and_exit_2(stub, capsys, status, words):
    stub.fail["*"] = (status, {"code": status, "message": f"stub says {status}"})
    code, out, err = _run(capsys, "kernels", "status", f"{USER}/paddy-tiny-probe")
    _assert_one_line_error(code, out, err, *words)


def test_an_answer_the_client_cannot_parse_is_one_line(stub, capsys):
    stub.fail["GetKernelSessionStatus"] = (200, {"status": "SOME_NEW_STATUS"})  # newer than this client's enum
    code, out, err = _run(capsys, "kernels", "status", f"{USER}/paddy-tiny-probe")
    _assert_one_line_error(code, out, err, "SOME_NEW_STATUS", "pip install -U kaggle")


def test_connection_refused_is_one_line(stub, monkeypatch, capsys):
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _point_at(monkeypatch, f"http://127.0.0.1:{port}")
    code, out, err = _run(capsys, "kernels", "status", f"{USER}/paddy-tiny-probe")
    _assert_one_line_error(code, out, err, "cannot reach Kaggle")


def test_verbose_is_refused_before_any_request(stub, monkeypatch, capsys):
    monkeypatch.setenv("VERBOSE", "1")
    code, out, err = _run(capsys, "kernels", "status", f"{USER}/paddy-tiny-probe")
    _assert_one_line_error(code, out, err, "VERBOSE", "unset")
    assert stub.requests == [] and KEY not in err


def test_submit_sends_logs_and_submissions_fill_the_score(stub, tmp_path, capsys):
    csv, log = _submission_csv(tmp_path / "first.csv"), tmp_path / "submissions" / "log.csv"
    code, out, err = _run(capsys, "submit", csv, "-m", "all normal", "--log", log)
    assert code == 0 and "ref 50001" in out, err
    start, create = stub.calls("StartSubmissionUpload")[0]["body"], stub.calls("CreateSubmission")[0]["body"]
    assert (start["competitionName"], start["fileName"], start["contentLength"]) == (
        "paddy-disease-classification", "first.csv", csv.stat().st_size)
    assert stub.uploads["/upload/submission-1"] == csv.read_bytes()
    assert (create["blobFileTokens"], create["submissionDescription"]) == ("submission-token-1", "all normal")
    from paddy.ensemble.log import read_log

    row = read_log(log).iloc[0]
    assert (row["event"], row["message"], row["competition"], str(row["kaggle_ref"])) == (
        "submitted", "all normal", "paddy-disease-classification", "50001")

    stub.scores[50001] = "0.97123"
    code, out, err = _run(capsys, "submissions", "--log", log)
    assert code == 0 and "0.97123" in out and "all normal" in out, err
    assert stub.calls("ListSubmissions")[0]["body"]["competitionName"] == "paddy-disease-classification"
    assert read_log(log).iloc[0]["public_score"] == pytest.approx(0.97123)
    _assert_no_secret(stub, tmp_path, out, err)


def test_submissions_show_why_kaggle_could_not_score_one(stub, tmp_path, capsys):
    stub.fail["ListSubmissions"] = (200, {"submissions": [
        {"ref": 7, "fileName": "a.csv", "description": "try", "status": "ERROR",
         "errorDescription": "Submission must have 3469 rows"}]})
    code, out, err = _run(capsys, "submissions", "--log", tmp_path / "log.csv")
    assert code == 0 and "error" in out and "Submission must have 3469 rows" in out, err


def test_submit_carries_the_ensembles_accuracy_and_the_score_fills_both_rows(stub, tmp_path, capsys, monkeypatch):
    from paddy.ensemble.log import append_log, read_log

    monkeypatch.chdir(tmp_path)
    (tmp_path / "submissions").mkdir()
    csv = _submission_csv(tmp_path / "submissions" / "ab.csv")  # absolute here, relative in the ensemble's row
    append_log("submissions/log.csv", {"event": "written", "file": "submissions/ab.csv", "members": "a(); b()",
                                       "weights": "1,1", "valid_accuracy": 0.93, "n_valid": 8})
    code, out, err = _run(capsys, "submit", csv, "-m", "a and b")  # no --log: the log beside the CSV
    assert code == 0 and "submissions/log.csv" in out, err
    submitted = read_log("submissions/log.csv").iloc[1]
    assert (submitted["event"], submitted["members"], submitted["valid_accuracy"], submitted["n_valid"]) == (
        "submitted", "a(); b()", 0.93, "8")
    stub.scores[50001] = "0.95"
    assert _run(capsys, "submissions", "--log", "submissions/log.csv")[0] == 0
    assert list(read_log("submissions/log.csv")["public_score"]) == [0.95, 0.95]


def test_submit_checks_the_csv_before_sending(stub, tmp_path, capsys):
    bad = _submission_csv(tmp_path / "bad.csv", label="not_a_disease")
    log = tmp_path / "log.csv"
    code, out, err = _run(capsys, "submit", bad, "-m", "oops", "--log", log)
    _assert_one_line_error(code, out, err, "not_a_disease")
    assert stub.requests == [] and not log.exists()


def test_submit_to_another_competition_checks_against_its_folder(stub, tmp_path, capsys):
    data = tmp_path / "cats"
    for label in ("cat", "dog"):
        (data / "train_images" / label).mkdir(parents=True)
    (data / "sample_submission.csv").write_text("image_id,label\n1.jpg,cat\n2.jpg,cat\n")
    csv, log = tmp_path / "cats.csv", tmp_path / "log.csv"
    csv.write_text("image_id,label\n2.jpg,dog\n1.jpg,cat\n")
    code, out, err = _run(capsys, "submit", csv, "-m", "first", "--competition", "cats-vs-dogs", "--log", log)
    _assert_one_line_error(code, out, err, "--data")  # Paddy Doctor's ids and labels say nothing about it
    assert stub.requests == [] and not log.exists()
    code, out, err = _run(capsys, "submit", csv, "-m", "first", "--competition", "cats-vs-dogs", "--data", data,
                          "--log", log)
    assert code == 0, err
    assert stub.calls("StartSubmissionUpload")[0]["body"]["competitionName"] == "cats-vs-dogs"
    csv.write_text("image_id,label\n2.jpg,dog\n1.jpg,normal\n")
    code, out, err = _run(capsys, "submit", csv, "-m", "again", "--competition", "cats-vs-dogs", "--data", data)
    _assert_one_line_error(code, out, err, "'normal'", "allowed: cat, dog")


def test_submit_refused_403_says_accept_the_rules(stub, tmp_path, capsys):
    stub.fail["StartSubmissionUpload"] = (403, {"code": 403, "message": "You must accept this competition's rules"})
    log = tmp_path / "log.csv"
    code, out, err = _run(capsys, "submit", _submission_csv(tmp_path / "s.csv"), "-m", "try", "--log", log)
    _assert_one_line_error(code, out, err, "HTTP 403", "competitions/paddy-disease-classification/rules")
    assert not log.exists()


def test_stub_stops_by_itself():
    import urllib.request

    assert KaggleStub(max_seconds=0.2).start().wait(timeout=5)
    stub = KaggleStub(max_requests=1, max_seconds=30).start()
    request = urllib.request.Request(f"{stub.url}/api/v1/kernels.KernelsApiService/GetKernelSessionStatus",
                                     data=b'{"userName": "a", "kernelSlug": "bcdef"}', method="POST")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5)  # straight to it
    assert stub.wait(timeout=5) and [r["method"] for r in stub.requests] == ["GetKernelSessionStatus"]


def test_push_with_an_array_cache_sends_it_as_a_private_dataset_once(stub, rendered, tiny_sample, tmp_path,
                                                                     capsys):
    cache = write_array_cache(tiny_sample, tmp_path / "cache", 64, "squish", workers=1, progress=False).out
    (tmp_path / "tiny.toml").write_text(PLAN_TOML)
    with_cache = render_kernels(load_plan(tmp_path / "tiny.toml"), USER, out=tmp_path / "cached", cache=cache)[0]
    stage = tmp_path / "stage" / "kit"
    before = len(stub.requests)
    code, out, err = _run(capsys, "kernels", "push", rendered[0], "--stage", stage, "--cache", cache)
    _assert_one_line_error(code, out, err, "do not read the cache dataset someone/paddy-cache-squish64x64",
                           "--cache")
    assert "StartBlobUpload" not in [r["method"] for r in stub.requests[before:]]

    code, out, err = _run(capsys, "kernels", "push", with_cache[0], "--stage", stage, "--cache", cache)
    assert code == 0 and "dataset someone/paddy-cache-squish64x64: created" in out, (out, err)
    created = {c["body"]["slug"]: c["body"] for c in stub.calls("CreateDataset")}
    body = created["paddy-cache-squish64x64"]
    assert body["isPrivate"] is True and len(body["files"]) == 6  # arrays, index, manifest, the two CSVs
    assert (cache / "train.npy").read_bytes() in stub.uploads.values()
    assert stub.calls("SaveKernel")[-1]["body"]["datasetDataSources"] == [f"{USER}/paddy-kit",
                                                                          f"{USER}/paddy-cache-squish64x64"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        ["manifest.json", "index.csv", "train.npy", "test.npy", "train.csv", "sample_submission.csv"])
    code, out, err = _run(capsys, "kernels", "push", with_cache[0], "--stage", stage, "--cache", cache)
    assert code == 0 and "dataset someone/paddy-cache-squish64x64: unchanged" in out, (out, err)


def test_submissions_print_cv_beside_the_public_score_and_plot_them(stub, tmp_path, capsys):
    from paddy.ensemble.log import CV_PLOT, append_log

    log = tmp_path / "submissions" / "log.csv"
    for n, (cv, public) in enumerate(((0.91, 0.90), (0.93, 0.925), (0.95, 0.94))):
        ref = 60001 + n
        stub.submissions.append({"ref": ref, "description": f"try {n}", "token": ""})
        stub.scores[ref] = str(public)
        append_log(log, {"event": "submitted", "file": f"s{n}.csv", "competition": "paddy-disease-classification",
                         "message": f"try {n}", "kaggle_ref": ref, "cv_accuracy": cv, "cv_std": 0.01,
                         "fit": "caruana/logloss"})
    code, out, err = _run(capsys, "submissions", "--log", log)
    assert code == 0, err
    assert "CV" in out.splitlines()[0] and "0.93000" in out and "0.925" in out
    assert f"public score vs CV: {log.parent / CV_PLOT}" in out
    assert (log.parent / CV_PLOT).read_bytes().startswith(b"\x89PNG")


def test_fewer_than_three_scored_rows_make_no_plot(stub, tmp_path, capsys):
    from paddy.ensemble.log import CV_PLOT, append_log

    log = tmp_path / "log.csv"
    stub.submissions.append({"ref": 60001, "description": "one", "token": ""})
    stub.scores[60001] = "0.9"
    append_log(log, {"event": "submitted", "file": "s.csv", "competition": "paddy-disease-classification",
                     "message": "one", "kaggle_ref": 60001, "cv_accuracy": 0.92, "cv_std": 0.01})
    code, out, err = _run(capsys, "submissions", "--log", log)
    assert code == 0 and "0.92000" in out and "vs CV" not in out, err
    assert not (tmp_path / CV_PLOT).exists()


def test_push_never_deletes_a_folder_the_kit_did_not_make(stub, rendered, tmp_path, capsys):
    data = tmp_path / "data"  # a competition folder given as --stage by mistake
    (data / "train_images" / "blast").mkdir(parents=True)
    (data / "train_images" / "blast" / "100001.jpg").write_bytes(b"jpeg")
    (data / "train.csv").write_text("image_id,label\n100001.jpg,blast\n")
    (data / "notes.txt").write_text("mine")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = _run(capsys, "kernels", "push", rendered[0], "--stage", data)
    _assert_one_line_error(code, out, err, "not a kit staging folder", ".paddy-kit-stage")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (data / "notes.txt").read_text() == "mine"
    assert not [r for r in stub.requests if r["method"] in ("StartBlobUpload", "CreateDataset")]


def test_push_with_stage_dot_is_one_line(stub, rendered, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(rendered[0])  # a folder with files in it, as the current folder usually is
    before = sorted(p.name for p in rendered[0].iterdir())
    code, out, err = _run(capsys, "kernels", "push", rendered[0], "--stage", ".")
    _assert_one_line_error(code, out, err, "current folder")
    assert sorted(p.name for p in rendered[0].iterdir()) == before


def test_a_kit_stage_carries_its_marker_and_is_rebuilt(stub, rendered, tmp_path, capsys):
    from paddy.kaggle.kit import STAGE_MARKER, is_kit_stage

    stage = tmp_path / "stage" / "kit"
    assert _run(capsys, "kernels", "push", rendered[0], "--stage", stage)[0] == 0
    assert (stage / STAGE_MARKER).is_file() and is_kit_stage(stage)
    (tmp_path / "stage" / "kit.source").write_text("another source\n")  # the source changed: rebuilt in place
    assert _run(capsys, "kernels", "push", rendered[0], "--stage", stage)[0] == 0
    assert (stage / STAGE_MARKER).is_file() and len(list(stage.glob("*.whl"))) == 1
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == ["kit", "kit.source", PUSHED_FILE]
