/**
 * Desktop notifications through the system's own tool (notify-send, osascript), so the binary
 * needs no native module. Best effort: a machine without a notification daemon is normal
 * (servers, CI), so failures are reported once and otherwise ignored.
 */
import { spawn } from "node:child_process";
import type { NotificationConfig } from "../config/schema.ts";
import { errorText, logOnce, messageFor, titleFor, type Channel, type ChannelDeps, type RunCommand } from "./format.ts";

type DesktopConfig = Extract<NotificationConfig, { type: "desktop" }>["config"];

const COMMAND_TIMEOUT_MS = 5000;
// The text arrives as argv, never inside the script, so nothing in it can inject AppleScript.
const APPLESCRIPT = ["on run argv", "display notification (item 2 of argv) with title (item 1 of argv)", "end run"];

export function createDesktop(cfg: DesktopConfig, deps: ChannelDeps): Channel {
  const warn = logOnce(deps.log);
  return {
    name: "desktop",
    async send(event, ctx, signal) {
      const title = titleFor(event, ctx);
      const message = messageFor(event, ctx);
      const cmd = commandFor(deps.platform, cfg, title, message);
      if (!cmd) return;
      try {
        const r = await deps.runCommand(cmd[0], cmd[1], { timeoutMs: COMMAND_TIMEOUT_MS, env: deps.env, signal });
        if (r.exitCode !== 0) throw new Error(`${cmd[0]} exited with ${r.exitCode ?? "a signal"}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ""}`);
      } catch (e) {
        warn("failed", `desktop notification failed (later failures are not reported): ${errorText(e)}`);
      }
    },
  };
}

function commandFor(platform: NodeJS.Platform, cfg: DesktopConfig, title: string, message: string): [string, string[]] | undefined {
  if (platform === "linux") {
    const expire = Math.round(cfg.timeout * 1000);
    return ["notify-send", [`--app-name=${cfg.app_name}`, `--expire-time=${expire}`, "--", title, message]];
  }
  if (platform === "darwin") return ["osascript", [...APPLESCRIPT.flatMap((line) => ["-e", line]), title, message]];
  return undefined;
}

/** Runs a short-lived helper; its PATH comes from `env`, so tests can put a fake first. */
export const runCommand: RunCommand = (file, args, { timeoutMs, env, signal }) =>
  new Promise((resolve, reject) => {
    const clean: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
    const child = spawn(file, args, { env: clean, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-1000)));
    const kill = () => child.kill("SIGKILL");
    const timer = setTimeout(kill, timeoutMs);
    signal.addEventListener("abort", kill, { once: true });
    const settle = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", kill);
    };
    child.on("error", (e) => {
      settle();
      reject(e);
    });
    child.on("close", (code) => {
      settle();
      resolve({ exitCode: code, stderr });
    });
  });
