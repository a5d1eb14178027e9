import { defineCommand } from "citty";
import { spawn } from "node:child_process";
import { EXIT, MozartError } from "../errors.ts";
import { createDashboardApp } from "../dashboard/app.ts";
import { isLoopbackHost } from "../dashboard/security.ts";
import { serveDashboard } from "../dashboard/serve.ts";
import { mozartHome } from "../state/registry.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput } from "./output.ts";

export default defineCommand({
  meta: { name: "dashboard", description: "Serve a live web page and REST API to watch and steer every job on this machine (Ctrl+C stops it)" },
  args: {
    host: { type: "string", description: "Address to listen on (default 127.0.0.1; any other needs --token)", valueHint: "ADDR" },
    port: { type: "string", alias: "p", description: "Port to listen on (default 8000; 0 picks a free one)", valueHint: "PORT" },
    open: { type: "boolean", description: "Open the page in the browser" },
    token: { type: "string", description: "Require this token on every route but /health (or set MOZART_DASHBOARD_TOKEN)", valueHint: "TOKEN" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const host = args.host ?? "127.0.0.1";
    const port = args.port === undefined ? 8000 : Number(args.port);
    if (args.port !== undefined && (!/^\d+$/.test(args.port) || port > 65535)) throw new MozartError(`--port expects a port number (0-65535), got "${args.port}"`, { exitCode: EXIT.usage });
    const token = args.token ?? (process.env.MOZART_DASHBOARD_TOKEN || undefined);
    if (token !== undefined && token.length < 16) throw new MozartError("the dashboard token is too short", { exitCode: EXIT.usage, hint: "use at least 16 characters, for example: --token $(openssl rand -hex 16)" });
    if (!isLoopbackHost(host) && !token) {
      throw new MozartError(`refusing to listen on ${host} without a token: anyone who can reach it could read and steer your jobs`, {
        exitCode: EXIT.usage,
        hint: "pass --token <secret> (or set MOZART_DASHBOARD_TOKEN), or keep the default --host 127.0.0.1",
      });
    }
    const home = mozartHome(process.env);
    const app = createDashboardApp({ home, token });
    const served = await serveDashboard(app, { host, port }).catch(async (e: unknown) => {
      await app.close();
      throw e;
    });
    const login = app.access.loginPath();
    const openUrl = login ? `${served.url}${login}` : `${served.url}/`;
    if (out.json) out.emit({ url: served.url, login_url: login ? openUrl : null, docs: `${served.url}/docs`, openapi: `${served.url}/openapi.json`, pid: process.pid, home });
    else {
      out.print(`Mozart dashboard on ${out.c.bold(served.url)}  (API: ${served.url}/docs)  — Ctrl+C stops it`);
      if (login) out.print(`sign this browser in once with: ${openUrl}`);
      out.info(out.c.dim(`jobs from ${home}`));
    }
    if (args.open) openBrowser(openUrl, (m) => out.warn(m));

    const stop = await new Promise<string>((resolve) => {
      for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(sig, () => resolve(sig));
    });
    if (!out.json) out.info(out.c.dim(`stopping the dashboard (${stop})`));
    await app.close();
    await served.close();
    return EXIT.ok;
  },
});

/** xdg-open, open or start: where none exists (a server, CI) it says so once and carries on. */
function openBrowser(url: string, warn: (msg: string) => void): void {
  const [cmd, ...args] = process.platform === "darwin" ? ["open", url] : process.platform === "win32" ? ["cmd", "/c", "start", "", url] : ["xdg-open", url];
  try {
    const child = spawn(cmd!, args, { stdio: "ignore", detached: process.platform !== "win32" });
    child.on("error", () => warn(`cannot open a browser here (${cmd} is missing): open ${url} yourself`));
    child.unref();
  } catch {
    warn(`cannot open a browser here: open ${url} yourself`);
  }
}
