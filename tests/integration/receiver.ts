/**
 * A real HTTP receiver for notification tests: node:http on 127.0.0.1, port 0. Every request is
 * recorded with its raw body (signatures are over the raw bytes); each path answers from a plan
 * of [status, delayMs] steps, the last one repeating. A status of 0 never answers (a receiver
 * that hangs).
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  body: unknown;
  at: number;
}

export type Step = [status: number, delayMs: number, headers?: Record<string, string>];

export interface Receiver {
  url: string;
  received: Received[];
  /** What `path` answers, request after request; the last step repeats. Default: 200 at once. */
  plan(path: string, steps: Step[]): void;
  /** Requests received on `path`. */
  on(path: string): Received[];
  reset(): void;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const plans = new Map<string, Step[]>();
  const hanging = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (raw += d));
    req.on("end", () => {
      const path = req.url ?? "/";
      let body: unknown = null;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {
        body = raw;
      }
      received.push({ path, headers: req.headers, raw, body, at: Date.now() });
      const plan = plans.get(path) ?? [[200, 0]];
      const [status, delay, headers] = (plan.length > 1 ? plan.shift() : plan[0]) ?? [200, 0];
      if (status === 0) {
        hanging.add(res);
        return;
      }
      setTimeout(() => {
        if (!res.destroyed) res.writeHead(status, { "content-type": "text/plain", ...headers }).end(status < 300 ? "ok" : `status ${status}`);
      }, delay);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    plan: (path, steps) => plans.set(path, [...steps]),
    on: (path) => received.filter((r) => r.path === path),
    reset() {
      received.length = 0;
      plans.clear();
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
