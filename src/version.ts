/** The version, from package.json, plus the git commit embedded at build time when known. */
import pkg from "../package.json" with { type: "json" };

declare const MOZART_COMMIT: string | undefined;

export const VERSION: string = pkg.version;
export const COMMIT: string | undefined = typeof MOZART_COMMIT === "string" && MOZART_COMMIT ? MOZART_COMMIT : undefined;

export function versionLine(): string {
  return `mozart ${VERSION}${COMMIT ? ` (${COMMIT})` : ""}`;
}
