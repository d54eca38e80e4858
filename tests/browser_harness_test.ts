// Checks the headless-Chromium harness (`tests/_harness/browser.ts`) on a tiny page served by
// Deno.serve on a free port: the page loads, a bounded wait sees text the page sets later, a click
// runs the page's handler, an attribute reads back, a full-page screenshot is a PNG, and close()
// leaves no Chromium process and no profile behind. A missing browser fails at once with what to
// do; a wait that cannot succeed fails within its bound and says what it saw.
import assert from "node:assert/strict";
import {
  attributeOf,
  click,
  launchBrowser,
  type LaunchedBrowser,
  screenshot,
  textOf,
  waitForSelector,
  waitForText,
  withBrowser,
} from "./_harness/browser.ts";
import { processesMentioning } from "./_harness/dev_cluster.ts";

const PAGE = `<!doctype html>
<html><body>
  <p id="status">loading</p>
  <button id="go" data-action="go">go</button>
  <p id="count" data-clicks="0">0</p>
  <script>
    setTimeout(() => { document.getElementById("status").textContent = "ready"; }, 300);
    document.getElementById("go").addEventListener("click", () => {
      const count = document.getElementById("count");
      const clicks = Number(count.dataset.clicks) + 1;
      count.dataset.clicks = String(clicks);
      setTimeout(() => { count.textContent = "clicked " + clicks; }, 100);
    });
  </script>
</body></html>`;

Deno.test("launchBrowser() loads a page, waits, clicks, screenshots, and cleans up", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } }),
  );
  const dir = await Deno.makeTempDir({ prefix: "tinykv-browser-test-" });
  let browser: LaunchedBrowser | undefined;
  try {
    browser = await launchBrowser();
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.addr.port}/`);
    assert.equal(
      await waitForText(page, "#status", { expected: "ready", timeoutMs: 10_000 }),
      "ready",
    );
    await waitForSelector(page, "button[data-action='go']");
    await click(page, "button[data-action='go']");
    await waitForText(page, "#count", { expected: /^clicked 1$/, timeoutMs: 10_000 });
    assert.equal(await attributeOf(page, { selector: "#count", name: "data-clicks" }), "1");
    assert.equal(await textOf(page, "#missing"), undefined);

    const png = `${dir}/shots/page.png`;
    await screenshot(page, png);
    const bytes = await Deno.readFile(png);
    assert.deepEqual([...bytes.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "a PNG file");
    assert.deepEqual(browser.pageErrors, []);

    const profile = browser.profileDir;
    assert.ok((await processesMentioning(profile)).length > 0, "Chromium runs on the profile");
    await browser.close();
    await browser.close();
    assert.deepEqual(await processesMentioning(profile), [], "no Chromium process is left");
    await assert.rejects(Deno.stat(profile), Deno.errors.NotFound, "the profile is removed");
  } finally {
    await browser?.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launchBrowser() fails at once, saying what to do, when Chromium is missing", async () => {
  const started = Date.now();
  await assert.rejects(
    launchBrowser({ executablePath: "/nonexistent/chromium" }),
    /Cannot launch Chromium: "\/nonexistent\/chromium" is missing \(deno task setup --test/,
  );
  assert.ok(Date.now() - started < 1000, "no wait for a browser that is not there");
});

Deno.test("waitForText() gives up within its bound and says what it saw", async () => {
  await withBrowser(async (browser) => {
    const page = await browser.newPage();
    await page.setContent(`<p id="status">loading</p>`);
    const started = Date.now();
    await assert.rejects(
      waitForText(page, "#status", { expected: "ready", timeoutMs: 600 }),
      /Timed out after 600 ms waiting for "#status" to show "ready" on about:blank; last seen: "loading"$/,
    );
    await assert.rejects(
      waitForSelector(page, "table#grid", { timeoutMs: 300 }),
      /waiting for an element matching "table#grid" on about:blank; last seen: false/,
    );
    assert.ok(Date.now() - started < 5000, "both waits ended near their bounds");
  });
});
