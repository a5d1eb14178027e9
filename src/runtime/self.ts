/**
 * How to start this same mozart again (the dashboard's resume button): the compiled binary
 * itself, or the runtime that runs this checkout with its entry point.
 */
import { fileURLToPath } from "node:url";

const MAIN_URL = new URL("../main.ts", import.meta.url);

export function selfCommand(): string[] {
  // Inside a `bun build --compile` binary the modules live in a virtual file system.
  const compiled = MAIN_URL.pathname.includes("$bunfs") || MAIN_URL.pathname.includes("~BUN");
  if (compiled) return [process.execPath];
  const main = fileURLToPath(MAIN_URL);
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
  return isDeno ? [process.execPath, "run", "-A", main] : [process.execPath, main];
}
