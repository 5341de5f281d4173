"""The MLflow UI as an ordinary user sees it, in headless Chromium against a real server.

alice (editor of project fraud) signs in with HTTP Basic (her name and an API key) and opens
what a user opens: the experiments list, her experiment, her run, a run of bob's by its URL,
the model registry, the review queues, the AI gateway and its settings. The browser reaches the
server as `mlflow.test` (mapped to 127.0.0.1), the way people reach a shared server: the UI
treats localhost specially (it always shows the assistant there).

Debian's `chromium` through Playwright's `executable_path` (no browser download); see
docs/ui.md for what the UI asks and what the server answers.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support import servers, teams
from tests.support.encrypted import upload_encrypted

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
HOST = "mlflow.test"  # resolved by Chromium only (--host-resolver-rules): no /etc/hosts edit
LOADED = 20_000  # ms: how long a page may take to show what it is about (2 shared cores)
ENCRYPTED_TEXT = "threshold 0.73 chosen on the holdout"  # stored encrypted, shown decrypted
SETTLED = 3.0  # s: a page is settled once no request has been answered for this long

if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed (apt-get install -y chromium): the UI test needs "
        f"{CHROMIUM}; CI must have it",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    server = servers.start(
        tmp_path_factory.mktemp("ui"),
        env={
            "MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000",
            # MLflow's own DNS-rebinding and CORS guards, told about the name the browser uses
            "MLFLOW_SERVER_ALLOWED_HOSTS": f"127.0.0.1:*,localhost:*,{HOST}:*",
            "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": f"http://{HOST}:*",
        },
    )
    try:
        actors = teams.populate(server)
        ids = {}
        for who, project in (("alice", "fraud"), ("bob", "churn")):
            actor = actors[who]
            tags = [{"key": "mlflow.secure.project", "value": project}]
            created = actor.call(
                "POST",
                "/2.0/mlflow/experiments/create",
                json={"name": f"{who}-{project}-experiment", "tags": tags},
            )
            assert created.status_code == 200, created.text
            ids[f"{who}_experiment"] = experiment_id = created.json()["experiment_id"]
            run = actor.call(
                "POST",
                "/2.0/mlflow/runs/create",
                json={"experiment_id": experiment_id, "run_name": f"{who}-run"},
            )
            assert run.status_code == 200, run.text
            ids[f"{who}_run"] = run_id = run.json()["run"]["info"]["run_id"]
            logged = actor.call(
                "POST",
                "/2.0/mlflow/runs/log-metric",
                json={"run_id": run_id, "key": f"{who}_auc", "value": 0.9, "timestamp": 1},
            )
            assert logged.status_code == 200, logged.text
            model = actor.call(
                "POST",
                "/2.0/mlflow/registered-models/create",
                json={"name": f"{who}-model", "tags": tags},
            )
            assert model.status_code == 200, model.text
        # a confidential experiment whose artefact is stored encrypted (docs/encryption.md)
        tags = [
            {"key": "mlflow.secure.project", "value": "fraud"},
            {"key": "mlflow.secure.classification", "value": "confidential"},
        ]
        created = actors["alice"].call(
            "POST", "/2.0/mlflow/experiments/create", json={"name": "alice-sealed", "tags": tags}
        )
        ids["sealed_experiment"] = sealed = created.json()["experiment_id"]
        run = actors["alice"].call(
            "POST", "/2.0/mlflow/runs/create", json={"experiment_id": sealed}
        )
        ids["sealed_run"] = run_id = run.json()["run"]["info"]["run_id"]
        upload_encrypted(actors["alice"], sealed, run_id, "notes.txt", ENCRYPTED_TEXT.encode())
        yield server, actors, ids
    finally:
        server.interrupt()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[f"--host-resolver-rules=MAP {HOST} 127.0.0.1"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


class Visit:
    """One page of the UI as alice, with every answer the server gave it."""

    def __init__(self, page, base: str, shots: Path) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.answers: list[tuple[int, str, str]] = []  # (status, method, path)
        self.console: list[str] = []
        self.last_answer = time.monotonic()
        page.on("response", self._answered)
        page.on("requestfailed", self._failed)
        page.on("console", self._logged)

    def _answered(self, response) -> None:
        self.last_answer = time.monotonic()
        if response.url.startswith(self.base):
            path = response.url[len(self.base) :]
            self.answers.append((response.status, response.request.method, path))

    def _failed(self, request) -> None:
        if request.url.startswith(self.base):
            self.answers.append((0, request.method, request.url[len(self.base) :]))

    def _logged(self, message) -> None:
        if message.type == "error":
            self.console.append(message.text)

    def open(self, route: str) -> Visit:
        self.page.goto(f"{self.base}/#{route}")
        return self

    def shows(self, text: str | re.Pattern[str], timeout: int = LOADED) -> None:
        try:
            self.page.get_by_text(text).first.wait_for(state="visible", timeout=timeout)
        except playwright_api.TimeoutError:
            self.page.screenshot(path=str(self.shots / "not-shown.png"))
            raise AssertionError(
                f"{text!r} not shown within {timeout} ms on {self.page.url}; the page says "
                f"{self.text()[:1500]!r}; failed calls: {self.failed()}; console errors: "
                f"{self.console[-5:]}; screenshot in "
                f"{self.shots / 'not-shown.png'}"
            ) from None

    def text(self) -> str:
        return self.page.inner_text("body")

    def settle(self, limit: float = 30.0) -> Visit:
        """Wait until the UI has stopped asking (its polls aside, it asks once per view)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(250)
            if time.monotonic() - self.last_answer >= SETTLED:
                break
        return self

    def failed(self, pattern: str = "") -> list[tuple[int, str, str]]:
        """The answers of the API (not the UI's own files) with an error status, or none."""
        return [
            (status, method, path)
            for status, method, path in self.answers
            if (status >= 400 or status == 0)
            and ("api/" in path or path.startswith("/graphql"))
            and pattern in path
        ]


@pytest.fixture
def visit(world, browser, tmp_path):
    server, actors, _ = world
    port = server.url.rsplit(":", 1)[1]
    context = browser.new_context(
        http_credentials={"username": "alice", "password": actors["alice"].key},
        viewport={"width": 1400, "height": 900},
    )
    try:
        yield Visit(context.new_page(), f"http://{HOST}:{port}", tmp_path)
    finally:
        context.close()


def test_the_experiments_list_shows_her_experiment_and_not_bobs(visit):
    visit.open("/experiments").shows("alice-fraud-experiment")
    visit.settle()
    assert "bob-churn-experiment" not in visit.text()
    account = visit.page.get_by_role("button", name="Account menu for alice")
    assert account.is_visible(), "the signed-in user is not named in the UI"
    asked = [a for a in visit.answers if a[2].startswith("/ajax-api/2.0/mlflow/users/current")]
    assert asked, "the UI did not ask who is signed in"
    assert all(status == 200 for status, _, _ in asked), asked


def test_her_run_shows_its_metrics(world, visit):
    _, _, ids = world
    visit.open(f"/experiments/{ids['alice_experiment']}/runs/{ids['alice_run']}")
    visit.shows("alice_auc")
    assert visit.page.get_by_text("alice-run").first.is_visible()
    assert visit.settle().failed("mlflow/runs") == []
    assert visit.failed("/graphql") == []


def test_the_registry_lists_her_model_and_not_bobs(visit):
    visit.open("/models").shows("alice-model")
    visit.settle()
    assert "bob-model" not in visit.text()
    assert visit.failed("registered-models") == []


def test_no_call_about_the_signed_in_user_fails(world, visit):
    """`users/current` and `users/current/permissions` are answered on every page that asks;
    once the UI knows who is signed in it hides review-queue controls unless told not to."""
    _, _, ids = world
    experiment = f"/experiments/{ids['alice_experiment']}"
    for route in ("/experiments", experiment, f"{experiment}/review-queue"):
        visit.open(route).settle()
    visit.shows("Manage questions")
    asked = [a for a in visit.answers if "/mlflow/users/current" in a[2]]
    assert {path.split("?")[0] for _, _, path in asked} >= {
        "/ajax-api/2.0/mlflow/users/current",
        "/ajax-api/3.0/mlflow/users/current/permissions",
    }
    assert [a for a in asked if a[0] != 200] == []


def test_bobs_run_shows_an_error_instead_of_a_loader(world, visit):
    """MLflow's "Run ID … does not exist" page (its answer for a missing run), or "Can't load
    run details" with the server's message; not a skeleton that, after Apollo's retries, ends
    in "Response not successful: Received status code 403"."""
    _, _, ids = world
    run_id, experiment_id = ids["bob_run"], ids["bob_experiment"]
    visit.open(f"/experiments/{experiment_id}/runs/{run_id}")
    visit.shows(re.compile(rf"Run ID {run_id} does not exist|Can't load run details"), 10_000)
    assert "Response not successful" not in visit.text()
    assert "bob-run" not in visit.text()
    assert "bob_auc" not in visit.text()
    visit.open(f"/experiments/{experiment_id}")
    visit.shows("Experiment load error", 10_000)
    assert "Response not successful" not in visit.text()
    assert "bob-churn-experiment" not in visit.text()


def test_the_assistant_and_the_gateway_answer_cleanly(visit):
    visit.open("/experiments").shows("alice-fraud-experiment")
    visit.settle()
    assert not visit.page.locator("[data-assistant-ui]").count(), "the assistant is offered"
    visit.open("/gateway").shows("Get started with AI Gateway")
    assert "Set up MLflow AI Gateway" not in visit.text()
    visit.settle()
    visit.open("/settings/llm-connections").shows("No API keys created")
    visit.settle()
    assert visit.failed("/assistant/") == []
    assert visit.failed("/gateway/") == []


def test_an_encrypted_artefact_is_shown_decrypted_in_the_artefact_viewer(world, visit):
    _, _, ids = world
    visit.open(
        f"/experiments/{ids['sealed_experiment']}/runs/{ids['sealed_run']}/artifacts/notes.txt"
    )
    visit.shows("notes.txt")
    visit.shows(ENCRYPTED_TEXT)
    visit.page.screenshot(path=str(visit.shots / "encrypted-artefact.png"))
    assert "MLSE" not in visit.text()
    assert visit.settle().failed("get-artifact") == []
