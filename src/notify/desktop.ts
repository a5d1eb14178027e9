/**
 * Desktop notifications through the system's own tool, so the binary needs no native module:
 * notify-send (Linux and other Unix desktops), osascript (macOS), Windows PowerShell's toast API.
 * The text never becomes part of a script: osascript gets it as argv, PowerShell through
 * environment variables read by a fixed script. Best effort: a machine without a notification
 * daemon is normal (servers, CI), so a missing tool turns the channel off for the run after one
 * warning, and the notifier reports a repeated failure once.
 */
import { spawn } from "node:child_process";
import type { NotificationConfig } from "../config/schema.ts";
import { describeEvent, type Channel, type ChannelDeps, type Env, type RunCommand } from "./format.ts";

type DesktopConfig = Extract<NotificationConfig, { type: "desktop" }>["config"];

const COMMAND_TIMEOUT_MS = 5000;
const APPLESCRIPT = ["on run argv", "display notification (item 2 of argv) with title (item 1 of argv)", "end run"];

/** Environment variables the PowerShell script reads the text from. */
export const TOAST_TITLE_ENV = "MOZART_NOTIFY_TITLE";
export const TOAST_MESSAGE_ENV = "MOZART_NOTIFY_MESSAGE";
const TOAST_SCRIPT = [
  "$ErrorActionPreference = 'Stop'",
  "[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime] > $null",
  "$xml = [Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent([Windows.UI.Notifications.ToastTemplateType]::ToastText02)",
  "$texts = $xml.GetElementsByTagName('text')",
  `$texts.Item(0).AppendChild($xml.CreateTextNode($env:${TOAST_TITLE_ENV})) > $null`,
  `$texts.Item(1).AppendChild($xml.CreateTextNode($env:${TOAST_MESSAGE_ENV})) > $null`,
  "$toast = [Windows.UI.Notifications.ToastNotification]::new($xml)",
  // Windows shows toasts only for a registered app id: PowerShell's own.
  "$app = '{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\\WindowsPowerShell\\v1.0\\powershell.exe'",
  "[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier($app).Show($toast)",
].join("\n");
/** -EncodedCommand takes UTF-16LE base64: no quoting of the script by any shell or by Windows' argv rules. */
const TOAST_ENCODED = Buffer.from(TOAST_SCRIPT, "utf16le").toString("base64");

export function createDesktop(cfg: DesktopConfig, deps: ChannelDeps): Channel {
  const tool = toolFor(deps.platform);
  let unavailable: string | undefined;
  return {
    name: "desktop",
    target: tool,
    problems: [],
    async send(event, ctx, signal) {
      if (unavailable) return { skipped: unavailable };
      const n = describeEvent(event, ctx);
      const [file, args, env] = commandFor(deps.platform, cfg, n.title, n.text, deps.env);
      try {
        const r = await deps.runCommand(file, args, { timeoutMs: COMMAND_TIMEOUT_MS, env, signal });
        if (r.exitCode !== 0) throw new Error(`${file} exited with ${r.exitCode ?? "a signal"}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ""}`);
        return {};
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
        // The tool will not appear during the run: one warning, then the channel is off.
        unavailable = `${tool} is not installed${deps.platform === "linux" ? " (Debian/Ubuntu: libnotify-bin)" : ""}`;
        throw new Error(unavailable);
      }
    },
  };
}

function toolFor(platform: NodeJS.Platform): string {
  if (platform === "darwin") return "osascript";
  if (platform === "win32") return "powershell.exe";
  return "notify-send";
}

function commandFor(platform: NodeJS.Platform, cfg: DesktopConfig, title: string, message: string, env: Env): [string, string[], Env] {
  if (platform === "darwin") return ["osascript", [...APPLESCRIPT.flatMap((line) => ["-e", line]), title, message], env];
  if (platform === "win32") {
    return ["powershell.exe", ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand", TOAST_ENCODED], { ...env, [TOAST_TITLE_ENV]: title, [TOAST_MESSAGE_ENV]: message }];
  }
  return ["notify-send", [`--app-name=${cfg.app_name}`, `--expire-time=${Math.round(cfg.timeout * 1000)}`, "--", title, message], env];
}

/** Runs a short-lived tool; its PATH comes from `env`, so tests can put a fake first. */
export const runCommand: RunCommand = (file, args, { timeoutMs, env, signal }) =>
  new Promise((resolve, reject) => {
    const clean: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
    const child = spawn(file, args, { env: clean, stdio: ["ignore", "ignore", "pipe"], windowsHide: true });
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
