// The fleet page in a real browser (Debian's chromium driven by playwright-core) against a live bus: the grid
// shows every device, a reset walks through its phases on the page without a reload and ends verified, a
// quarantined device shows its reason, the event filters work, and the device panel shows the image's
// decoders. The test saves a screenshot to test/ui/artifacts/fleet.png.
import { mkdirSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CxlrcClient, clientOn } from "../../client/index.ts";
import { startUi, type UiHandle } from "../../services/ui/server.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  type RunningCoordinator,
  rootPortHost,
  startWorld,
  stopAt,
  type World,
} from "../coordinator/helpers.ts";

const BDF = "0000:01:00.0";
const ARTIFACTS = new URL("./artifacts/", import.meta.url);

describe("fleet page in a browser", () => {
  let w: World;
  let c: RunningCoordinator;
  let ui: UiHandle;
  let browser: Browser;
  let page: Page;
  let client: CxlrcClient;
  const hold = stopAt("resetting", "after");
  const cell = (label: string | RegExp) => page.getByRole("button", { name: label });

  beforeAll(async () => {
    w = await startWorld([
      simpleHost({ name: "alpha" }),
      rootPortHost("bravo", 2),
      simpleHost({ name: "charlie" }),
    ]);
    c = await w.coordinator({ hosts: ["alpha", "bravo", "charlie"], stepHook: hold.hook });
    client = clientOn(w.nc);
    ui = await startUi({ nc: w.nc, listen: { port: 0 }, busRetryMs: 50 });
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  });
  afterAll(async () => {
    hold.release();
    await browser?.close();
    await ui?.close();
    await c?.stop();
    await w?.close();
  });

  it("the grid shows every host and device, each a button named by its state", async () => {
    await page.goto(ui.url);
    await cell(`charlie ${BDF}: ready`).waitFor();
    const labels = await page
      .locator("#grid button.cell")
      .evaluateAll((bs) => bs.map((b) => b.getAttribute("aria-label")));
    expect(labels).toEqual([
      `alpha ${BDF}: ready`,
      `bravo ${BDF}: ready`,
      "bravo 0000:02:00.0: ready",
      `charlie ${BDF}: ready`,
    ]);
    await expect.poll(() => page.getByRole("status").textContent()).toBe("bus connected");
  });

  it("a reset shows as resetting, walks through its phases live and ends verified, without a reload", async () => {
    // Every label the alpha cell takes, as the page redraws it.
    // (A string: this project's TypeScript has no DOM types; the browser runs it as it is.)
    await page.evaluate(`(() => {
      const seen = [];
      window.seen = seen;
      new MutationObserver((ms) => {
        for (const m of ms)
          for (const n of m.addedNodes) {
            const label = n.getAttribute?.("aria-label");
            if (label?.startsWith("alpha ")) seen.push(label);
          }
      }).observe(document.getElementById("grid"), { childList: true, subtree: true });
    })()`);
    const h = await client.reset({ host: "alpha", bdf: BDF, scope: "full", reason: "ui browser test" });
    await hold.atPoint;
    await cell(`alpha ${BDF}: resetting (resetting)`).waitFor();
    hold.release();
    expect((await h.outcome).kind).toBe("verified");
    await cell(`alpha ${BDF}: ready (verified)`).waitFor();
    const seen = (await page.evaluate("window.seen")) as string[];
    const phases = seen.map((l) => l.replace(`alpha ${BDF}: `, ""));
    const order = [
      "resetting (savingImage)",
      "resetting (resetting)",
      "resetting (committingDecoders)",
      "resetting (verifying)",
      "ready (verified)",
    ];
    expect(order.map((p) => phases.indexOf(p))).toEqual(
      [...order.map((p) => phases.indexOf(p))].sort((a, b) => a - b),
    );
    expect(order.every((p) => phases.includes(p))).toBe(true);
    // The counters moved with the outcome.
    await expect.poll(() => page.locator('#outcomes td[data-outcome="verified"]').textContent()).toBe("1");
  });

  it("a quarantined device shows its reason", async () => {
    const sim = w.sims.get("charlie")!;
    sim.faults.set(BDF, { name: "commit-error", decoder: 0 });
    try {
      const h = await client.reset({ host: "charlie", bdf: BDF, scope: "full", reason: "ui browser test" });
      expect((await h.outcome).kind).toBe("quarantined");
    } finally {
      sim.faults.clear(BDF, "commit-error");
    }
    const q = cell(`charlie ${BDF}: quarantined`);
    await q.waitFor();
    expect(await q.locator(".why").textContent()).toMatch(/decoder 0 reports Error Not Committed/);
    await q.click();
    await page.locator(".quarantine-reason").waitFor();
    expect(await page.locator(".quarantine-reason").textContent()).toMatch(
      /^quarantined because: restore from the image failed 2 time\(s\): .*decoder 0 reports Error Not Committed/,
    );
    await expect.poll(() => page.locator('#outcomes td[data-outcome="quarantined"]').textContent()).toBe("1");
  });

  it("the event filters: host, kind and since replay; a bad device is named", async () => {
    await page.getByLabel("Filter host").fill("alpha");
    await page.getByLabel("Filter kind").fill("state.entered");
    await page.getByLabel("Replay since").fill("1h");
    await page.getByRole("button", { name: "Apply filters" }).click();
    const rows = page.locator("#events tbody tr");
    // The rows shown before the filtered replay answers are the unfiltered ones: counted only once the page
    // has cleared them for the replay (its note names the filters then).
    await expect.poll(() => page.locator("#events-note").textContent()).toContain("host=alpha");
    await expect.poll(() => rows.count()).toBeGreaterThan(5);
    const cols = await rows.evaluateAll((trs) =>
      trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)),
    );
    expect(cols.every((r) => r[1] === "alpha" && r[4] === "state.entered")).toBe(true);
    expect(cols.map((r) => r[5])).toContain("savingImage");

    await page.getByLabel("Filter host").fill("");
    await page.getByLabel("Filter kind").fill("quarantined");
    await page.getByLabel("Replay since").fill("");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await expect
      .poll(async () =>
        (await rows.evaluateAll((trs) => trs.map((tr) => tr.children[4]?.textContent))).join(","),
      )
      .toBe("quarantined");

    await page.getByLabel("Filter device").fill("zz:01");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await expect
      .poll(() => page.getByRole("alert").textContent())
      .toMatch(/^400: bad bdf "zz:01".*\(field bdf\)$/);
    await page.getByLabel("Filter device").fill("");
    await page.getByLabel("Filter kind").fill("");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toBe("");
  });

  it("the device panel: reset history with phase durations, last plan, the image's decoders", async () => {
    await cell(`alpha ${BDF}: ready (verified)`).click();
    await page.locator("#panel-h", { hasText: `Device alpha ${BDF}` }).waitFor();
    const decoders = page.getByRole("list", { name: "HDM decoders" });
    await decoders.waitFor();
    expect(await decoders.locator("li").allTextContents()).toEqual([
      "decoder0: committed",
      "decoder1: not committed",
    ]);
    const image = await page.locator("pre.image").textContent();
    expect(image).toMatch(/^image of alpha 0000:01:00\.0/);
    expect(image).toMatch(/decoder0 {2}base 0x100000000 {2}size 0x10000000 {2}committed/);
    const history = await page.locator(".reset p").first().textContent();
    expect(history).toMatch(/: verified, full by cxl, /);
    const phaseRows = await page
      .locator(".reset table")
      .first()
      .locator("tbody tr td:first-child")
      .allTextContents();
    expect(phaseRows).toEqual(
      expect.arrayContaining(["savingImage", "resetting", "committingDecoders", "verifying"]),
    );
    expect(await page.locator(".panel-part", { hasText: "Last plan" }).textContent()).toMatch(
      /scope full by cxl/,
    );
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL("fleet.png", ARTIFACTS).pathname, fullPage: false });
  });
});
