"""The web dashboard, end to end in headless Chromium: a blue-green rollout followed live, then promoted by hand; a
metric analysis followed check by check; a canary followed step by step.

Chromium and its driver come from Debian (`chromium`, `chromium-driver`); the `browser` fixture installs them when
they are missing and skips only if that install fails. Selenium calls block, so each runs in a thread: the event
loop keeps serving the app (an in-loop uvicorn) and running the scheduler passes the test drives.
"""

import asyncio
import base64
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.providers import Providers
from store.models import RouteStatus, ShadowSample, ShadowSpec
from store.replicas import Destination
from switchover.app import create_app
from switchover.settings import Settings
from switchover.traffic_counts import TrafficCounts
from tests import debian
from tests.analysis_helpers import Stub, checks_taken, first_deploy, green_healthy, spec
from tests.live_server import serving
from tests.scenario import Scenario, blue_green, canary
from tests.test_canary import held, pause, weight
from tests.test_shadow import SHIFT_SHADOW, green_destination
from tests.tokens import SECRET, token

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_SECONDS = 15


def ensure_chromium() -> None:
    debian.ensure(["chromium", "chromium-driver"], provides=[CHROMIUM, CHROMEDRIVER], why="the dashboard test",
                  recommends=True)  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ensure_chromium()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="switchover-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,1000",
        ):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


class Page:
    """The browser, driven from the event loop: every selenium call runs in a thread."""

    def __init__(self, driver: Any, shots: Path) -> None:
        self.driver = driver
        self.shots = shots

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def until(self, what: str, check: Callable[[Any], Any]) -> Any:
        """Wait (in a thread) until check(driver) is truthy; fail with `what` and the page's text."""
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(
            self.driver, WAIT_SECONDS, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
        )
        try:
            return await self.call(wait.until, check)
        except TimeoutException:
            body = await self.text("body")
            pytest.fail(f"the page never showed {what}; it shows:\n{body}")

    async def on(self, css: str, action: Callable[[Any], Any]) -> Any:
        """action(element) for the element matching css, found again if a live update re-rendered it meanwhile."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def attempt() -> Any:
            for _ in range(20):
                try:
                    return action(self.driver.find_element(By.CSS_SELECTOR, css))
                except StaleElementReferenceException:
                    continue
            raise AssertionError(f"{css} kept being replaced")

        return await self.call(attempt)

    async def text(self, css: str) -> str:
        return await self.on(css, lambda e: e.text)

    async def shows(self, what: str, css: str, *words: str) -> None:
        """Wait until the element(s) matching css contain every word."""
        from selenium.webdriver.common.by import By

        def check(driver: Any) -> bool:
            text = " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))
            return all(word in text for word in words)

        await self.until(what, check)

    async def count(self, css: str) -> int:
        from selenium.webdriver.common.by import By

        return len(await self.call(self.driver.find_elements, By.CSS_SELECTOR, css))

    async def has(self, what: str, css: str, count: int) -> None:
        from selenium.webdriver.common.by import By

        await self.until(what, lambda driver: len(driver.find_elements(By.CSS_SELECTOR, css)) == count)

    async def click(self, css: str) -> None:
        await self.on(css, lambda e: e.click())

    async def screenshot(self, name: str, *, whole: bool = True) -> Path:
        """The whole page, beyond the window (Chromium's DevTools protocol), or just the window, into tmp_path."""

        def capture() -> bytes:
            if not whole:
                return self.driver.get_screenshot_as_png()
            size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            shot = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
            )
            return base64.b64decode(shot["data"])

        path = self.shots / f"{name}.png"
        path.write_bytes(await self.call(capture))
        print(f"screenshot: {path}")
        return path

    async def script(self, source: str) -> Any:
        return await self.call(self.driver.execute_script, source)


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Page:
    return Page(browser, tmp_path)


async def test_the_dashboard_and_its_assets_are_served(client: Any) -> None:
    for path in ("/", "/ui", "/ui/"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert "/ui/app.js" in response.text and "/ui/style.css" in response.text
        assert "script-src 'self'" in response.headers["content-security-policy"]
    for asset, kind in (("/ui/app.js", "javascript"), ("/ui/style.css", "text/css")):
        response = await client.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
    assert (await client.get("/ui/nope.js")).status_code == 404
    sizes = {p.name: p.stat().st_size for p in (Path(__file__).parents[1] / "switchover" / "ui").iterdir()}
    assert sum(sizes.values()) < 40_000, sizes  # plain HTML/CSS/JS, fast to load


async def test_a_blue_green_rollout_is_followed_live_and_promoted_from_the_page(
    scenario: Scenario, db: Any, settings: Settings, page: Page
) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(scale_down_delay_seconds=300))
    await scenario.ready_on_first_revision()
    name = (await scenario.deployment()).name

    async with serving(create_app(settings, db)) as url:
        await page.open(url + "/")
        await page.shows("the deployment in the list", "tbody tr", name, "READY", "rev 1")
        await page.shows("a live connection", "#live", "Live")
        await page.screenshot("1-list")

        await page.click(f'a[href="#/d/{scenario.id}"]')
        await page.shows("the deployment, READY", "#d-lifecycle", "READY")
        await page.has("revision 1 serving on two routes", 'li.route[data-revision="1"][data-traffic="ACTIVE"]', 2)
        assert not await page.on("#act-promote", lambda e: e.is_enabled())
        assert "nothing to promote" in await page.text("#why-promote")
        await page.shows("a live connection", "#live", "Live")
        await page.script("window.notReloaded = true")  # gone if the page reloads

        await scenario.deploy()  # revision 2: the page follows without a reload from here on
        await page.shows("the rollout starting", "#d-lifecycle", "DEPLOYING", "PROVISIONING")
        await scenario.tick()  # the scheduler starts two green routes without traffic
        await page.has("two green routes provisioning", 'li.route[data-revision="2"][data-status="PROVISIONING"]', 2)
        await page.shows("why it waits", "#d-waiting", "ROUTES_NOT_HEALTHY")
        await page.screenshot("2-provisioning")

        await scenario.report(RouteStatus.HEALTHY, revision=2, count=1)
        await page.has("one green route healthy", 'li.route[data-revision="2"][data-status="HEALTHY"]', 1)
        await scenario.healthy(revision=2)
        await scenario.tick()  # all green routes healthy: awaiting promotion
        await page.shows("the rollout awaiting promotion", "#d-lifecycle", "AWAITING_PROMOTION")
        await page.shows("why it waits", "#d-waiting", "MANUAL_PROMOTION")
        await page.until("an enabled promote button", lambda d: d.find_element("id", "act-promote").is_enabled())
        assert await page.text("#act-promote") == "Promote revision 2"
        assert await page.count('li.route[data-traffic="ACTIVE"][data-revision="2"]') == 0
        await page.screenshot("3-awaiting-promotion")

        from selenium.webdriver.common.keys import Keys

        await page.on("#act-promote", lambda e: e.send_keys(Keys.ENTER))  # keyboard-usable
        await page.shows("a confirmation naming the revision", "#confirm", "revision 2", "model:2", "revision 1")
        assert await page.script("return document.activeElement.textContent") == "Cancel"  # the safe default
        await page.screenshot("4-confirm-promotion", whole=False)  # a modal dialog covers the window
        await page.click("#confirm-ok")

        await page.has("revision 2 serving on two routes", 'li.route[data-revision="2"][data-traffic="ACTIVE"]', 2)
        await page.has("revision 1 kept warm", 'li.route[data-revision="1"][data-traffic="INACTIVE"]', 2)
        await page.shows("the deployment READY on revision 2", "#d-lifecycle", "READY")
        await page.shows("the promotion in the history", ".timeline", "promote", "promoted revision 2", "anonymous")
        await page.until("an enabled revert button", lambda d: d.find_element("id", "act-revert").is_enabled())
        assert await page.text("#act-revert") == "Revert to revision 1"
        assert await page.script("return window.notReloaded") is True
        assert await page.text("#error") == ""
        await page.screenshot("5-promoted")
        console = await page.call(page.driver.get_log, "browser")
        assert [e for e in console if e["level"] == "SEVERE"] == [], console  # no script error, no CSP violation

    assert await scenario.active_revisions() == [2, 2]
    assert (await scenario.history())[-1].startswith("promote SUCCESS")


async def test_with_a_jwt_secret_the_page_asks_for_a_token_and_keeps_it(
    scenario: Scenario, db: Any, database_url: str, page: Page
) -> None:
    await scenario.given_deployment(replicas=1)
    name = (await scenario.deployment()).name
    app = create_app(Settings(database_url=database_url, jwt_secret=SECRET), db)

    async with serving(app) as url:
        await page.open(url + "/ui")
        await page.shows("the refusal with its code", "#error", "UNAUTHENTICATED", "Authorization")
        await page.screenshot("6-no-token")

        await page.on("#token", lambda e: e.send_keys(token(roles=["admin"])))
        await page.click("#token-form button[type=submit]")
        await page.shows("the deployment in the list", "tbody tr", name, "PENDING")
        await page.shows("a live connection", "#live", "Live")
        assert await page.text("#error") == ""

        await page.open(url + "/ui")  # a reload keeps the token for the session
        await page.shows("the deployment in the list after a reload", "tbody tr", name)
        await scenario.deploy()  # live events, authorized by the token in connection_init
        await page.shows("the deployment rolling out", "tbody tr", name, "DEPLOYING", "rev 1")
        await page.script("sessionStorage.clear()")


async def open_afresh(page: Page, url: str) -> None:
    """Open url after leaving the last test's page, whose console (a server gone, say) is no business of this one."""
    await page.open("about:blank")
    await page.call(page.driver.get_log, "browser")  # reading the log empties it
    await page.open(url)


async def no_script_errors(page: Page) -> None:
    console = await page.call(page.driver.get_log, "browser")
    assert [e for e in console if e["level"] == "SEVERE"] == [], console  # no script error, no CSP violation


async def test_a_pre_promotion_analysis_is_followed_live_check_by_check(
    scenario: Scenario, db: Any, settings: Settings, page: Page
) -> None:
    metrics = Stub()
    providers = Providers(allow_loopback=True)  # the stub listens on loopback
    newest = ".runs > article:first-child"
    try:
        async with serving(metrics.app()) as stub_url, serving(create_app(settings, db)) as url:
            strategy = blue_green(pre_promotion_analysis=spec(stub_url, count=4, failure_limit=1))
            await scenario.given_deployment(replicas=2, strategy=strategy)
            await first_deploy(scenario, providers)  # revision 1 is analysed too: 4 passing checks

            await open_afresh(page, f"{url}/#/d/{scenario.id}")
            await page.shows("revision 1's run, ended", f'{newest}[data-phase="SUCCESSFUL"]', "revision 1", "4 passed")
            await page.shows("a live connection", "#live", "Live")
            await page.script("window.notReloaded = true")

            await green_healthy(scenario, providers)  # revision 2's run starts and takes its first check
            await page.shows("the new run", f'{newest}[data-phase="RUNNING"]', "Pre-promotion analysis", "revision 2",
                             "RUNNING", "1 passed · 0 failed", "next check")  # fmt: skip
            await page.shows("its passing measurement", f'{newest} tr[data-outcome="pass"]', "error-rate", "✓ pass",
                             "1", "within")  # fmt: skip
            await page.shows("why it waits", "#d-waiting", "ANALYSIS")
            assert not await page.on("#act-promote", lambda e: e.is_enabled())
            assert "analysis is still running" in await page.text("#why-promote")

            metrics.status = 500  # the provider gives no number: an error, never a pass
            await checks_taken(scenario, providers, 1)
            await page.shows("a check without a number", f'{newest} tr[data-outcome="none"]', "error-rate",
                             "? no number", "—", "500")  # fmt: skip
            await page.has("two checks in the strip", f"{newest} .checks li", 2)

            metrics.status, metrics.value = 200, 7.5  # outside max 2.0: a failed check, one is tolerated
            await checks_taken(scenario, providers, 1)
            await page.shows("a failing measurement", f'{newest} tr[data-outcome="fail"]', "error-rate", "✗ fail",
                             "7.5", "outside")  # fmt: skip
            await page.shows("the counts", newest, "RUNNING", "1 passed · 1 failed")
            await page.screenshot("7-analysis-running")

            metrics.value = 0.5
            await checks_taken(scenario, providers, 1)  # passes, the run goes on: no history row, no event
            await page.shows("a check that brought no event", newest, "RUNNING", "2 passed · 1 failed", "0.5")
            await page.has("the checks, oldest first", f"{newest} .checks li", 4)
            outcomes = await page.script(
                "return [...document.querySelectorAll('.runs > article:first-child .checks li')].map(e => e.className)"
            )
            assert outcomes == ["mark pass", "mark none", "mark fail", "mark pass"]

            await checks_taken(scenario, providers, 1)  # 4 of 4 counted checks: the run succeeds
            await page.shows("the run SUCCESSFUL", f'{newest}[data-phase="SUCCESSFUL"]', "revision 2",
                             "3 passed · 1 failed", "ended")  # fmt: skip
            await page.shows("the rollout waiting for a person now", "#d-waiting", "MANUAL_PROMOTION")
            await page.until("an enabled promote button", lambda d: d.find_element("id", "act-promote").is_enabled())
            await page.has("two runs and the first one", ".runs > article", 2)
            await page.shows("the outcome in the history", ".timeline", "analysis", "SUCCESSFUL: 4 of 4 checks")
            assert await page.script("return window.notReloaded") is True
            assert await page.text("#error") == ""
            await page.screenshot("8-analysis-successful")
            await no_script_errors(page)
    finally:
        await providers.aclose()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"


async def test_a_canary_is_followed_live_step_by_step_and_resumed_from_the_page(
    scenario: Scenario, db: Any, settings: Settings, page: Page
) -> None:
    await scenario.given_deployment(replicas=4, strategy=canary(weight(25), pause(), weight(50), weight(100)))
    await scenario.ready_on_first_revision()

    async def tick() -> None:
        await scenario.tick()
        await held(scenario)

    async with serving(create_app(settings, db)) as url:
        await open_afresh(page, f"{url}/#/d/{scenario.id}")
        await page.shows("the canary's steps", "ol.steps", "Set weight 25 %", "Pause until promoted",
                         "Set weight 50 %", "Set weight 100 %")  # fmt: skip
        await page.shows("no rollout yet", "#canary-status", "No canary rollout in flight")
        assert await page.count("ol.steps li[aria-current]") == 0
        await page.shows("a live connection", "#live", "Live")
        await page.script("window.notReloaded = true")

        await scenario.deploy()
        await tick()  # step 1: one new route starts, no traffic until it is healthy
        await page.shows("the first step", "#canary-status", "Step 1 of 4", "0 %", "revision 2", "100 %")
        await page.has("step 1 current", 'ol.steps li[data-step="0"][aria-current="step"]', 1)

        await scenario.healthy(revision=2)
        await tick()  # 25 %, then the pause until a person promotes
        await page.shows("the weight set and the pause", "#canary-status", "Step 2 of 4", "25 %", "75 % on revision 1")
        await page.has("the pause current", 'ol.steps li.current[data-step="1"][aria-current="step"]', 1)
        await page.shows("the first step done", 'ol.steps li[data-step="0"]', "(done)")
        await page.shows("why it waits", "#d-waiting", "CANARY_PAUSE")
        assert await page.script("return document.querySelector('#canary-status').dataset.weight") == "25"
        await page.until("an enabled promote button", lambda d: d.find_element("id", "act-promote").is_enabled())
        assert await page.text("#act-promote") == "Resume canary of revision 2"
        await page.screenshot("9-canary-paused")

        await page.click("#act-promote")
        await page.shows("a confirmation that says it resumes", "#confirm", "Resumes the canary", "25 %")
        await page.click("#confirm-ok")
        await page.has("the next step current", 'ol.steps li[data-step="2"][aria-current="step"]', 1)
        await tick()  # 50 % needs a second new route
        await scenario.healthy(revision=2)
        await tick()
        await page.shows("the weight at 50 %", "#canary-status", "Step 4 of 4", "50 %", "50 % on revision 1")
        await page.has("the last step current", 'ol.steps li[data-step="3"][aria-current="step"]', 1)
        await page.has("revision 2 taking traffic on two routes",
                       'li.route[data-revision="2"][data-traffic="ACTIVE"]', 2)  # fmt: skip
        await page.screenshot("10-canary-50")

        await scenario.healthy(revision=2)
        await tick()  # 100 %: the new revision is current
        await page.shows("the rollout done", "#d-lifecycle", "READY")
        await page.shows("no rollout in flight", "#canary-status", "No canary rollout in flight")
        assert await page.count("ol.steps li[aria-current]") == 0
        assert await page.script("return window.notReloaded") is True
        assert await page.text("#error") == ""
        await no_script_errors(page)

    assert await scenario.active_revisions() == [2, 2, 2, 2]


async def test_shadow_agreement_over_time_and_a_disagreeing_pair_side_by_side_are_shown_live(
    scenario: Scenario, db: Any, settings: Settings, page: Page
) -> None:
    # Given revision 2 awaiting promotion with shadow traffic: half a minute ago 4 agreed, now 1 of 2 agreed
    await scenario.given_deployment(replicas=1, strategy=blue_green(shadow=ShadowSpec()))
    await scenario.awaiting_promotion_of_revision_2()
    green = await green_destination(scenario)
    await mirror(scenario, green, agreed=4)
    await db.execute(SHIFT_SHADOW, {"id": scenario.id, "seconds": 30.0})
    pair = ('POST /v1/predict\n\n{"text": "hello"}', '200\n\n{"label": "cat"}', '200\n\n{"label": "dog"}')
    await mirror(scenario, green, agreed=1, sample=ShadowSample(*pair))

    async with serving(create_app(settings, db)) as url:
        # When an operator opens the deployment
        await open_afresh(page, f"{url}/#/d/{scenario.id}")

        # Then the agreement, its history as bars (all agreed, then half) and the disagreement are shown
        await page.shows("the agreement", "#shadow-summary", "83.3 %", "of 6 mirrored requests", "1 disagreed",
                         "0 green errors")  # fmt: skip
        await page.has("two intervals with mirrored requests", "#shadow-over-time rect", 2)
        bars = await page.script(
            "return [...document.querySelectorAll('#shadow-over-time rect')].map(r => [r.getAttribute('class'),"
            " +r.dataset.requests, +r.dataset.agreed, r.getBoundingClientRect().height])"
        )
        assert [b[:3] for b in bars] == [["agree", 4, 4], ["drift", 2, 1]]
        assert bars[0][3] > bars[1][3] > 0  # the older bar is taller: all of it agreed
        await page.shows("the request", "#shadow-sample .request", "POST /v1/predict", '"hello"')
        await page.shows("blue's answer", "#shadow-sample .answer.blue", "Blue answer · revision 1", '"cat"')
        await page.shows("green's answer", "#shadow-sample .answer.green", "Green answer · revision 2", '"dog"')
        blue = await page.on("#shadow-sample .answer.blue", lambda e: e.rect)
        green_box = await page.on("#shadow-sample .answer.green", lambda e: e.rect)
        assert blue["y"] == green_box["y"] and blue["x"] + blue["width"] <= green_box["x"]  # side by side
        await page.screenshot("10-shadow")

        # And mirrored requests that bring no event still show up (the page looks again while green is mirrored to)
        await mirror(scenario, green, agreed=0, green_errors=2)
        await page.shows("the new counts", "#shadow-summary", "of 8 mirrored requests", "2 green errors")
        assert await page.text("#error") == ""
        await no_script_errors(page)


async def mirror(
    scenario: Scenario, green: Destination, *, agreed: int, green_errors: int = 0, sample: ShadowSample | None = None
) -> None:
    """A proxy mirrored requests to green and flushed: `agreed`, `green_errors`, and one disagreement with `sample`."""
    counts = TrafficCounts()
    for outcome, n in (("agreed", agreed), ("green_error", green_errors)):
        for _ in range(n):
            counts.shadow("m", green, outcome)
    if sample is not None:
        counts.shadow("m", green, "disagreed", sample)
    await counts.flush(scenario.db)
