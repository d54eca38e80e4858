/**
 * Headless Chromium for tests that check a page in a real browser (placement's dashboard): Debian's
 * `chromium` (which `deno task setup --test` installs), driven over the DevTools protocol by
 * `npm:puppeteer-core`. {@linkcode launchBrowser} starts it on a fresh profile in a temp dir;
 * {@linkcode LaunchedBrowser.close} always stops it (SIGKILL if it does not close in time) and
 * removes that profile. Every wait is bounded and says, when it times out, what it waited for and
 * what it saw last.
 *
 * puppeteer-core rather than playwright-core: under Deno 2.9.3 both drive Chromium, but
 * playwright-core reads `/proc/sys/fs/binfmt_misc/WSLInterop` at launch, which Deno allows only
 * with `--allow-all`. puppeteer-core needs `--allow-run=/usr/bin/chromium`, `--allow-env` (it
 * passes the whole environment to Chromium), `--allow-net=127.0.0.1` (the DevTools socket),
 * `--allow-read` and `--allow-write` (the profile, screenshots).
 *
 * @module
 */
import puppeteer, { type Browser, type Page } from "puppeteer-core";

/** A browser tab, as puppeteer-core drives it. */
export type { Page } from "puppeteer-core";

/** Where Debian's `chromium` package puts the browser (a script that execs the binary). */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** The bound of every wait in this harness unless the caller names another. */
export const WAIT_TIMEOUT_MS = 30_000;

/** How often a poll of the page looks again. */
const POLL_INTERVAL_MS = 200;

/** How long {@linkcode LaunchedBrowser.close} lets Chromium close before it kills it. */
const CLOSE_TIMEOUT_MS = 5_000;

/** Options of {@linkcode launchBrowser}. */
export interface LaunchOptions {
  /** The browser to run; default {@linkcode CHROMIUM_PATH}. */
  readonly executablePath?: string;
  /** Bound on starting the browser, in ms; default {@linkcode WAIT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** The pages' viewport; default 1400 × 1000. */
  readonly viewport?: { readonly width: number; readonly height: number };
}

/** A running headless Chromium; see {@linkcode launchBrowser}. */
export interface LaunchedBrowser {
  /** The temp dir of the browser's profile (`--user-data-dir`), removed by `close()`. */
  readonly profileDir: string;
  /**
   * Errors the pages reported: uncaught exceptions and `console.error` lines, oldest first, each
   * prefixed with its kind. For failure messages.
   */
  readonly pageErrors: readonly string[];
  /** Opens a new tab. */
  newPage(): Promise<Page>;
  /**
   * Closes the browser (killing it if it does not close within 5 s) and removes its profile.
   * Safe to call more than once and after a failure.
   */
  close(): Promise<void>;
}

/**
 * Starts headless Chromium on a fresh profile in a temp dir. Throws at once, with what to do, when
 * the browser is not installed; throws (and removes the profile) when it does not start within
 * `timeoutMs`.
 */
export async function launchBrowser(options: LaunchOptions = {}): Promise<LaunchedBrowser> {
  const executablePath = options.executablePath ?? CHROMIUM_PATH;
  await assertExecutable(executablePath);
  const timeoutMs = options.timeoutMs ?? WAIT_TIMEOUT_MS;
  const profileDir = await Deno.makeTempDir({ prefix: "tinykv-chromium-" });
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath,
      headless: true,
      userDataDir: profileDir,
      // Tests run as root, where Chromium's sandbox cannot start; they load only local pages.
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
      defaultViewport: options.viewport ?? { width: 1400, height: 1000 },
      timeout: timeoutMs,
      // A DevTools call that gets no answer fails instead of hanging the test.
      protocolTimeout: timeoutMs,
    });
  } catch (error) {
    await removeProfile(profileDir);
    throw new Error(`Cannot launch Chromium "${executablePath}": ${errorMessage(error)}`);
  }
  return new ChromiumSession(browser, profileDir);
}

/** Runs `work` with a browser from {@linkcode launchBrowser}, and closes it whatever happens. */
export async function withBrowser<T>(
  work: (browser: LaunchedBrowser) => Promise<T>,
  options: LaunchOptions = {},
): Promise<T> {
  const browser = await launchBrowser(options);
  try {
    return await work(browser);
  } finally {
    await browser.close();
  }
}

class ChromiumSession implements LaunchedBrowser {
  readonly profileDir: string;
  readonly #browser: Browser;
  readonly #pageErrors: string[] = [];
  #closed: Promise<void> | undefined;

  constructor(browser: Browser, profileDir: string) {
    this.#browser = browser;
    this.profileDir = profileDir;
  }

  get pageErrors(): readonly string[] {
    return this.#pageErrors;
  }

  async newPage(): Promise<Page> {
    const page = await this.#browser.newPage();
    page.on("pageerror", (error) => this.#pageErrors.push(`page error: ${errorMessage(error)}`));
    page.on("console", (message) => {
      if (message.type() === "error") this.#pageErrors.push(`console.error: ${message.text()}`);
    });
    return page;
  }

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    const child = this.#browser.process();
    const exited = child === null || child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const closed = this.#browser.close().then(() => true, () => false);
    if (!(await within(closed, CLOSE_TIMEOUT_MS))) child?.kill("SIGKILL");
    // After SIGKILL the exit follows at once; bounded all the same, so that close() never hangs.
    await within(exited, CLOSE_TIMEOUT_MS);
    await removeProfile(this.profileDir);
  }
}

/** Whether `promise` settles with `true` (or `undefined`) within `timeoutMs`. */
async function within(promise: Promise<boolean | void>, timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<false>((resolve) =>
    timer = setTimeout(() => resolve(false), timeoutMs)
  );
  try {
    return (await Promise.race([promise, timedOut])) !== false;
  } finally {
    clearTimeout(timer);
  }
}

/** Throws with what to do when `path` is not an executable file. */
async function assertExecutable(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error(
      `Cannot launch Chromium: "${path}" is missing (deno task setup --test installs Debian's ` +
        `"chromium")`,
    );
  }
  if (!info.isFile || ((info.mode ?? 0o111) & 0o111) === 0) {
    throw new Error(`Cannot launch Chromium: "${path}" is not an executable file`);
  }
}

/** Removes the profile; Chromium may still be finishing a write as it exits, so it tries again. */
async function removeProfile(dir: string): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      await Deno.remove(dir, { recursive: true });
      return;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      if (attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
}

/** Options of the bounded waits. */
export interface WaitOptions {
  /** The bound, in ms; default {@linkcode WAIT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
}

/** What {@linkcode pollUntil} polls. */
export interface Poll<T> extends WaitOptions {
  /** Reads the current value (of the page, of the cluster); it may throw, meaning "not yet". */
  readonly read: () => Promise<T>;
  /** Whether the value is the one waited for. */
  readonly accept: (value: T) => boolean;
}

/**
 * Polls `read` (every 200 ms) until `accept` takes what it returns; returns that value. On
 * timeout, throws `Timed out after N ms waiting for <what>; last seen: <value>`. `read` may throw
 * (e.g. while a page navigates): that counts as not yet, and its message is what was seen.
 */
export async function pollUntil<T>(what: string, poll: Poll<T>): Promise<T> {
  const { read, accept } = poll;
  const timeoutMs = poll.timeoutMs ?? WAIT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  let seen = "nothing yet";
  for (;;) {
    try {
      const value = await read();
      if (accept(value)) return value;
      seen = describe(value);
    } catch (error) {
      seen = `an error: ${errorMessage(error)}`;
    }
    if (Date.now() >= deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${seen}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

/** The text of the first element matching `selector`, or `undefined` when none matches. */
export async function textOf(page: Page, selector: string): Promise<string | undefined> {
  const text = await page.$$eval(selector, (found) => found[0]?.textContent ?? null);
  return text === null ? undefined : text.trim();
}

/**
 * The value of the attribute `name` of the first element matching `selector`, if both exist (a
 * boolean attribute that is set, such as `open`, has the value `""`).
 */
export async function attributeOf(
  page: Page,
  { selector, name }: { readonly selector: string; readonly name: string },
): Promise<string | undefined> {
  const value = await page.$$eval(
    selector,
    (found, attribute) => found[0]?.getAttribute(attribute) ?? null,
    name,
  );
  return value ?? undefined;
}

/** Waits (bounded) until an element matches `selector`. */
export async function waitForSelector(
  page: Page,
  selector: string,
  options: WaitOptions = {},
): Promise<void> {
  await pollUntil(`an element matching "${selector}" on ${page.url()}`, {
    read: () => page.$$eval(selector, (found) => found.length > 0),
    accept: (found) => found,
    ...options,
  });
}

/** Options of {@linkcode waitForText}. */
export interface WaitForTextOptions extends WaitOptions {
  /** The exact (trimmed) text, a pattern it matches, or a predicate it satisfies. */
  readonly expected: string | RegExp | ((text: string) => boolean);
}

/**
 * Waits (bounded) until the text of the first element matching `selector` is as `expected`;
 * returns that text.
 */
export async function waitForText(
  page: Page,
  selector: string,
  options: WaitForTextOptions,
): Promise<string> {
  const { expected } = options;
  const accept = typeof expected === "string"
    ? (text: string) => text === expected
    : expected instanceof RegExp
    ? (text: string) => expected.test(text)
    : expected;
  const wanted = typeof expected === "function" ? "the expected text" : describe(expected);
  const text = await pollUntil(`"${selector}" to show ${wanted} on ${page.url()}`, {
    read: () => textOf(page, selector),
    accept: (text) => text !== undefined && accept(text),
    timeoutMs: options.timeoutMs,
  });
  return text!;
}

/**
 * Clicks the first element matching `selector` as a user does (scrolled into view, the mouse on
 * its centre). A page that re-renders may replace the element between finding it and clicking it;
 * then the click is tried again, until it lands or the bound passes.
 */
export async function click(
  page: Page,
  selector: string,
  options: WaitOptions = {},
): Promise<void> {
  await pollUntil(`a click on "${selector}" on ${page.url()}`, {
    read: async () => {
      await page.click(selector);
      return true;
    },
    accept: (clicked) => clicked,
    ...options,
  });
}

/** Saves a PNG of the whole page (not just the viewport) at `path`, creating its folder. */
export async function screenshot(page: Page, path: string): Promise<void> {
  const slash = path.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
  await page.screenshot({ path: path as `${string}.png`, fullPage: true, type: "png" });
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing (undefined)";
  if (value instanceof RegExp) return String(value);
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
