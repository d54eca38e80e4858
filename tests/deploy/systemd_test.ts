// Checks the unit-file reader of the deployment test against systemd's rules: continued lines,
// comments, quoting, Environment= and the expansion of ${VAR} and $VAR in ExecStart=, and its
// refusals; then reads Debian's haproxy unit as the test does.
import assert from "node:assert/strict";
import { parseUnitFile, splitWords, unitCommand, unitEnvironment } from "./systemd.ts";

const UNIT = `# a comment
[Unit]
Description=Something

[Service]
User=tinykv
Group=tinykv
WorkingDirectory=/opt/tinykv
Environment=DENO_DIR=/var/cache/tinykv/deno
Environment="CONFIG=/etc/x y.cfg" 'EXTRA=-S /run/m.sock'
EnvironmentFile=-/etc/default/x
ExecStart=/usr/bin/deno run \\
  --allow-read=/a,/b \\
# a comment inside the command
  ; another
  "/opt/tinykv/with space.ts" -f \${CONFIG} $EXTRA 100%% --dir=\${DENO_DIR}/x
`;

Deno.test("parseUnitFile() and unitCommand() read a unit as systemd does", () => {
  const unit = parseUnitFile(UNIT);
  assert.deepEqual(unit.get("Unit"), [["Description", "Something"]]);
  assert.deepEqual(unitEnvironment(unit), {
    DENO_DIR: "/var/cache/tinykv/deno",
    CONFIG: "/etc/x y.cfg",
    EXTRA: "-S /run/m.sock",
  });
  const command = unitCommand(unit);
  assert.deepEqual(command.argv, [
    "/usr/bin/deno",
    "run",
    "--allow-read=/a,/b",
    "/opt/tinykv/with space.ts",
    "-f",
    "/etc/x y.cfg",
    "-S",
    "/run/m.sock",
    "100%",
    "--dir=/var/cache/tinykv/deno/x",
  ]);
  assert.equal(command.user, "tinykv");
  assert.equal(command.group, "tinykv");
  assert.equal(command.workingDirectory, "/opt/tinykv");
  assert.deepEqual(command.environmentFiles, ["-/etc/default/x"]);
  const overridden = unitCommand(unit, { EXTRA: "", CONFIG: "/tmp/c" });
  assert.deepEqual(overridden.argv.slice(4, 7), ["-f", "/tmp/c", "100%"]);
});

Deno.test("splitWords() groups quotes and honours escapes", () => {
  assert.deepEqual(splitWords(`a "b c" 'd "e"' f\\ g "h\\"i"`), [
    "a",
    "b c",
    'd "e"',
    "f g",
    'h"i',
  ]);
  assert.deepEqual(splitWords("  "), []);
  assert.deepEqual(splitWords(`x""`), ["x"]);
  assert.throws(() => splitWords(`a "b`), /Unterminated quote/);
});

Deno.test("unitCommand() refuses what it cannot run faithfully", () => {
  const service = (lines: string) => parseUnitFile(`[Service]\n${lines}\n`);
  assert.throws(() => unitCommand(service("User=x")), /exactly one ExecStart=, this one has 0/);
  assert.throws(
    () => unitCommand(service("ExecStart=/bin/a\nExecStart=/bin/b")),
    /exactly one ExecStart=, this one has 2/,
  );
  // An empty ExecStart= resets the list (a drop-in's first line): the other one counts.
  assert.deepEqual(unitCommand(service("ExecStart=\nExecStart=-/bin/b x")).argv, ["/bin/b", "x"]);
  assert.throws(() => unitCommand(service("ExecStart=@/bin/a b")), /"@" is not supported/);
  assert.throws(() => unitCommand(service("ExecStart=/bin/a %h")), /Specifier "%h"/);
  assert.throws(() => parseUnitFile("ExecStart=/bin/a\n"), /line 1 is neither/);
  assert.throws(() => parseUnitFile("[Service]\nnonsense\n"), /line 2 is neither/);
});

Deno.test("unitCommand() reads Debian's haproxy unit", async () => {
  let text: string;
  try {
    text = await Deno.readTextFile("/lib/systemd/system/haproxy.service");
  } catch {
    console.log("haproxy is not installed here (deno task setup --test installs it): skipped");
    return;
  }
  const command = unitCommand(parseUnitFile(text), { CONFIG: "/tmp/h.cfg" });
  assert.equal(command.argv[0], "/usr/sbin/haproxy");
  assert.ok(command.argv.includes("/tmp/h.cfg"), command.argv.join(" "));
  const p = command.argv.indexOf("-p");
  assert.ok(p > 0 && command.argv[p + 1].startsWith("/"), command.argv.join(" "));
});
