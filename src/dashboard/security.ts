/**
 * Who may talk to the dashboard.
 * - Host: on a loopback bind only loopback host names are answered, so a web page that
 *   rebinds its own DNS name to 127.0.0.1 cannot read the API.
 * - Token: with `--token` every route but /health needs it, as `Authorization: Bearer …` or as
 *   the session cookie set by visiting the one-time login URL the command prints.
 * - Cross-site: control routes (every POST) answer 403 to requests another site's page sends,
 *   judged by Sec-Fetch-Site and Origin, even on loopback. CORS is off: no route sends
 *   Access-Control-Allow-* headers.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export const SESSION_COOKIE = "mozart_session";

export interface AccessOptions {
  token?: string;
  /** Host header values answered (lower case, with port); undefined answers any. */
  allowedHosts?: ReadonlySet<string>;
}

const digest = (text: string) => createHash("sha256").update(text).digest();

function sameSecret(given: string, expected: Buffer): boolean {
  return timingSafeEqual(digest(given), expected);
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The Host values a loopback server on `port` answers to. */
export function loopbackHosts(port: number): Set<string> {
  return new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]);
}

export class Access {
  private readonly token: Buffer | undefined;
  private readonly sessions = new Set<string>();
  private loginCode: string | undefined;
  allowedHosts: ReadonlySet<string> | undefined;

  constructor(opts: AccessOptions) {
    this.token = opts.token ? digest(opts.token) : undefined;
    this.allowedHosts = opts.allowedHosts;
    if (this.token) this.loginCode = randomBytes(24).toString("base64url");
  }

  get protected(): boolean {
    return this.token !== undefined;
  }

  /** The path of the one-time login URL (null without a token, or once it was used). */
  loginPath(): string | null {
    return this.loginCode ? `/login?code=${this.loginCode}` : null;
  }

  hostAllowed(req: Request): boolean {
    if (!this.allowedHosts) return true;
    const host = (req.headers.get("host") ?? new URL(req.url).host).toLowerCase();
    return this.allowedHosts.has(host);
  }

  authorized(req: Request): boolean {
    if (!this.token) return true;
    const auth = req.headers.get("authorization");
    if (auth?.startsWith("Bearer ") && sameSecret(auth.slice(7).trim(), this.token)) return true;
    const session = cookie(req, SESSION_COOKIE);
    return session !== undefined && this.sessions.has(session);
  }

  /** Trades the one-time code for a session; the code works once. */
  login(code: string | null): string | null {
    if (!this.loginCode || !code || !sameSecret(code, digest(this.loginCode))) return null;
    this.loginCode = undefined;
    const session = randomBytes(32).toString("base64url");
    this.sessions.add(session);
    return session;
  }
}

/** A request another site's page made: refused on control routes. */
export function crossSite(req: Request): boolean {
  const site = req.headers.get("sec-fetch-site");
  if (site && site !== "same-origin" && site !== "none") return true;
  const origin = req.headers.get("origin");
  if (origin === null) return false;
  if (origin === "null") return true;
  try {
    return new URL(origin).host.toLowerCase() !== (req.headers.get("host") ?? new URL(req.url).host).toLowerCase();
  } catch {
    return true;
  }
}

function cookie(req: Request, name: string): string | undefined {
  const header = req.headers.get("cookie");
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}
