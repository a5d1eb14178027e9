/** Disk used by a folder tree, for `status` (worktrees): links are counted as links, never followed. */
import { lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";

/** Bytes allocated under `dir` (0 when it is missing); stops counting after `maxEntries` entries. */
export function diskUsage(dir: string, maxEntries = 500_000): { bytes: number; complete: boolean } {
  let bytes = 0;
  let seen = 0;
  const stack = [dir];
  while (stack.length) {
    const path = stack.pop()!;
    let st;
    try {
      st = lstatSync(path);
    } catch {
      continue;
    }
    if (++seen > maxEntries) return { bytes, complete: false };
    bytes += typeof st.blocks === "number" && st.blocks >= 0 ? st.blocks * 512 : st.size;
    if (!st.isDirectory()) continue;
    let names: string[];
    try {
      names = readdirSync(path);
    } catch {
      continue;
    }
    for (const name of names) stack.push(join(path, name));
  }
  return { bytes, complete: true };
}
