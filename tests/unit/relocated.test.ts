/**
 * PreparedJob.relocated: the job as a batch sees it from its worktree (isolation: worktree).
 * Every path the engine hands out follows the map; the job itself is unchanged.
 */
import { describe, expect, test } from "bun:test";
import { checkJob } from "../../src/config/check.ts";
import { ConfigError } from "../../src/config/errors.ts";
import { parseJobText } from "../../src/config/load.ts";

const yaml = (extra = "") => `name: rel
workspace: /repo/ws
batch: { size: 2, total_items: 4 }
prompt:
  template: "batch {{ batch_num }} in {{ workspace }}"
backend:
  type: command
  command: "cd {workspace} && echo {batch_num}"
validations:
  - { type: file_exists, path: "out/b{batch_num}.md" }
  - { type: file_exists, path: "/repo/ws/abs.txt" }
  - { type: file_exists, path: "/elsewhere/x.txt" }
  - { type: command_succeeds, command: "test -d {workspace}", working_directory: sub }
${extra}`;

const into = (wt: string) => (p: string) => (p === "/repo/ws" || p.startsWith("/repo/ws/") ? wt + p.slice("/repo/ws".length) : p);

describe("PreparedJob.relocated", () => {
  test("workspace, prompt, placeholders, validation paths and the backend's folder follow the map; the rest stays", async () => {
    const job = await checkJob(parseJobText(yaml(), "/jobs/rel.yaml"));
    const view = job.relocated(into("/wt/batch-2"));
    expect(view.config.workspace).toBe("/wt/batch-2");
    expect(view.prompt(2)).toBe("batch 2 in /wt/batch-2");
    expect(view.command(2)).toBe("cd /wt/batch-2 && echo 2");
    expect(view.cwd).toBe("/wt/batch-2");
    const rules = view.validations(2).map((r) => (r.type === "command_succeeds" ? `${r.command} @ ${r.working_directory}` : r.path));
    expect(rules).toEqual(["/wt/batch-2/out/b2.md", "/wt/batch-2/abs.txt", "/elsewhere/x.txt", "test -d /wt/batch-2 @ /wt/batch-2/sub"]);
    expect(view.variables(2)).toMatchObject({ workspace: "/wt/batch-2", job_dir: "/jobs" });
    // The job itself is untouched, and a second relocation composes with the first.
    expect(job.prompt(2)).toBe("batch 2 in /repo/ws");
    expect(job.validations(2)[0]).toMatchObject({ path: "/repo/ws/out/b2.md" });
    expect(view.relocated((p) => p.replace("/wt/", "/other/")).prompt(1)).toBe("batch 1 in /other/batch-2");
  });

  test("worktree.share must stay inside the workspace, and worktree settings need isolation: worktree", async () => {
    const bad = (extra: string) => checkJob(parseJobText(yaml(extra), "/jobs/rel.yaml")).then(
      () => "accepted",
      (e: ConfigError) => e.issues.map((i) => `${i.path}: ${i.message}`).join("\n"),
    );
    expect(await bad("isolation: worktree\nworktree: { share: [node_modules, ../outside, /abs] }")).toBe(
      ['worktree.share[1]: worktree.share lists folders inside the workspace, relative to it: "../outside" is not', 'worktree.share[2]: worktree.share lists folders inside the workspace, relative to it: "/abs" is not'].join("\n"),
    );
    expect(await bad("worktree: { setup: 'npm ci' }")).toBe("worktree: worktree.share and worktree.setup only apply with isolation: worktree");
    expect(await bad("isolation: worktree\nworktree: { share: [node_modules], setup: 'npm ci' }")).toBe("accepted");
  });
});
