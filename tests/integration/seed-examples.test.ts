/** The seed README's own examples load exactly as written. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { checkJob } from "../../src/config/check.ts";
import { parseJobText } from "../../src/config/load.ts";
import { FIXTURES, mozart } from "../helpers.ts";

const SEED = join(FIXTURES, "seed");
const base = `name: "snippet-job"
batch:
  size: 10
  total_items: 100
prompt:
  template: "Process batch {{ batch_num }}"
`;

describe("seed README examples", () => {
  test("Quick Start my-job.yaml validates unchanged", () => {
    const r = mozart(["validate", join(SEED, "my-job.yaml")]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("job my-batch-job");
    expect(r.stdout).toContain("batches:       10 (10 items each, items 1–100)");
  });

  test("Quick Start renders the seed's prompt and double-brace validation path", async () => {
    const job = await checkJob(parseJobText(readFileSync(join(SEED, "my-job.yaml"), "utf8"), join(SEED, "my-job.yaml")));
    expect(job.prompt(3)).toBe("Process batch 3 of 10.\nItems 21 to 30.\n\nComplete all items correctly for a reward!\n");
    expect(job.validations(3)[0]!.target).toBe(join(SEED, "workspace", "output", "batch3-result.md"));
    expect(job.config.retry.max_retries).toBe(2);
    expect(job.config.backend).toMatchObject({ type: "claude_cli", skip_permissions: true });
  });

  for (const name of ["snippet-backend", "snippet-retry", "snippet-rate-limit", "snippet-validations", "snippet-notifications"]) {
    test(`Configuration Reference: ${name} loads inside a job`, async () => {
      const text = base + readFileSync(join(SEED, `${name}.yaml`), "utf8");
      const job = await checkJob(parseJobText(text, join(SEED, `${name}.job.yaml`)));
      expect(job.totalBatches).toBe(10);
    });
  }

  test("snippet values arrive as written", async () => {
    const load = async (name: string) => (await checkJob(parseJobText(base + readFileSync(join(SEED, `${name}.yaml`), "utf8"), join(SEED, "x.yaml")))).config;
    expect((await load("snippet-backend")).backend).toMatchObject({ type: "claude_cli", model: "claude-sonnet-4-20250514", max_tokens: 8192, temperature: 0.7, working_directory: join(SEED, "workspace") });
    expect((await load("snippet-rate-limit")).rate_limit).toEqual({ wait_minutes: 60, max_waits: 24, admission_threshold: 0.9, detection_patterns: ["rate.?limit", "429", "quota"] });
    const v = await checkJob(parseJobText(base + readFileSync(join(SEED, "snippet-validations.yaml"), "utf8"), join(SEED, "x.yaml")));
    expect(v.validations(2).map((r) => r.target)).toEqual([
      join(SEED, "workspace", "batch2-output.md"),
      join(SEED, "workspace", "tracking.md"),
      join(SEED, "workspace", "report.md"),
      "python validate.py 2",
    ]);
    const n = (await load("snippet-notifications")).notifications;
    expect(n.map((x) => x.type)).toEqual(["desktop", "slack", "webhook"]);
  });
});
