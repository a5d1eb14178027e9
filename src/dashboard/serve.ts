/**
 * Serves the dashboard app on a port with srvx, h3's own server layer (Bun's server under Bun and
 * in the binary, Deno's under Deno, node:http under Node). listhen is not used: it falls
 * back to another port when the one asked for is taken, where the dashboard must say so.
 * SSE streams stay open: Bun's 10 s idle timeout is turned off, and the streams send
 * heartbeats.
 */
import { serve } from "srvx";
import { MozartError, EXIT } from "../errors.ts";
import type { DashboardApp } from "./app.ts";
import { isLoopbackHost, loopbackHosts } from "./security.ts";

export interface ServeOptions {
  host: string;
  port: number;
}

export interface ServedDashboard {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function serveDashboard(app: DashboardApp, opts: ServeOptions): Promise<ServedDashboard> {
  let server: ReturnType<typeof serve>;
  try {
    // Bun's server throws at once when the port is taken; node:http and Deno reject ready().
    server = serve({
      fetch: (req) => app.fetch(req),
      hostname: opts.host,
      port: opts.port,
      silent: true,
      gracefulShutdown: false,
      reusePort: false,
      bun: { idleTimeout: 0 },
      node: { requestTimeout: 0 },
    } as Parameters<typeof serve>[0]);
    await server.ready();
  } catch (e) {
    throw listenError(e, opts);
  }
  const port = Number(new URL(server.url ?? `http://${opts.host}:${opts.port}`).port) || opts.port;
  if (isLoopbackHost(opts.host)) app.access.allowedHosts = loopbackHosts(port);
  const shown = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${shown}:${port}`,
    port,
    close: () => server.close(true),
  };
}

/** Bun says "Is port N in use?", Node and Deno give an errno code: one clear message either way. */
function listenError(e: unknown, opts: ServeOptions): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  const text = String((e as Error)?.message ?? e);
  if (code === "EADDRINUSE" || /in use|EADDRINUSE|address already/i.test(text)) {
    return new MozartError(`port ${opts.port} on ${opts.host} is already in use`, { exitCode: EXIT.usage, hint: `pick another with --port (for example --port ${opts.port + 1}), or --port 0 for any free port` });
  }
  if (code === "EACCES" || /permission|EACCES/i.test(text)) return new MozartError(`no permission to listen on port ${opts.port}`, { exitCode: EXIT.usage, hint: "ports below 1024 need privileges: pick one above with --port" });
  if (code === "EADDRNOTAVAIL" || /EADDRNOTAVAIL|not available/i.test(text)) return new MozartError(`cannot listen on ${opts.host}: no such address on this machine`, { exitCode: EXIT.usage, hint: "use --host 127.0.0.1 (the default) or an address of this machine" });
  return e;
}
