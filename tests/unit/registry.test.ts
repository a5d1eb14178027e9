import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findJob, listRegistered, mozartHome, readRegistry, registerJob, registryCache, unregisterJob, type RegistryEntry } from "../../src/state/registry.ts";

describe("mozartHome", () => {
  test("MOZART_HOME wins on every platform", () => {
    expect(mozartHome({ MOZART_HOME: "/x/m", XDG_STATE_HOME: "/xdg" }, "linux", "/home/u")).toBe("/x/m");
    expect(mozartHome({ MOZART_HOME: "D:\\m", LOCALAPPDATA: "C:\\L" }, "win32", "C:\\Users\\u")).toBe("D:\\m");
  });
  test("XDG_STATE_HOME when absolute, else ~/.local/state", () => {
    expect(mozartHome({ XDG_STATE_HOME: "/xdg" }, "linux", "/home/u")).toBe("/xdg/mozart");
    expect(mozartHome({ XDG_STATE_HOME: "rel/dir" }, "linux", "/home/u")).toBe("/home/u/.local/state/mozart");
    expect(mozartHome({}, "darwin", "/Users/u")).toBe("/Users/u/.local/state/mozart");
    expect(mozartHome({ HOME: "/h" }, "linux", "/ignored")).toBe("/h/.local/state/mozart");
    expect(mozartHome({ MOZART_HOME: "" }, "linux", "/home/u")).toBe("/home/u/.local/state/mozart");
  });
  test("%LOCALAPPDATA%\\mozart on Windows", () => {
    expect(mozartHome({ LOCALAPPDATA: "C:\\Users\\u\\AppData\\Local" }, "win32", "C:\\Users\\u")).toBe("C:\\Users\\u\\AppData\\Local\\mozart");
    expect(mozartHome({}, "win32", "C:\\Users\\u")).toBe("C:\\Users\\u\\AppData\\Local\\mozart");
  });
});

describe("registry", () => {
  let home: string;
  const entry = (jobId: string, extra: Partial<RegistryEntry> = {}) => ({
    job_id: jobId,
    state_backend: "sqlite" as const,
    state_location: `/ws/${jobId}/.mozart/state.sqlite`,
    config_path: `/ws/${jobId}/job.yaml`,
    workspace: `/ws/${jobId}`,
    ...extra,
  });

  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), "mozart-home-"));
  });
  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
  });

  test("register then find; unknown job is null", async () => {
    expect(await findJob(home, "j1")).toBeNull();
    const saved = await registerJob(home, entry("j1", { updated_at: "2026-01-01T00:00:00.000Z" }));
    expect(await findJob(home, "j1")).toEqual(saved);
    expect(saved.updated_at).toBe("2026-01-01T00:00:00.000Z");
  });

  test("updated_at defaults to now and re-registering replaces the entry", async () => {
    const before = Date.now();
    const first = await registerJob(home, entry("j1"));
    expect(Date.parse(first.updated_at)).toBeGreaterThanOrEqual(before - 1000);
    await registerJob(home, entry("j1", { state_backend: "json", state_location: "/elsewhere" }));
    expect(await findJob(home, "j1")).toMatchObject({ state_backend: "json", state_location: "/elsewhere" });
    expect(await listRegistered(home)).toHaveLength(1);
  });

  test("odd ids get their own entries and stay inside the home folder", async () => {
    const ids = ["My Job", "my job", "my-job!", "a/b", "../../escape", "日本語", "."];
    for (const id of ids) await registerJob(home, entry(id));
    for (const id of ids) expect((await findJob(home, id))?.job_id).toBe(id);
    expect((await listRegistered(home)).map((e) => e.job_id).sort()).toEqual([...ids].sort());
    expect(await readdir(home)).toEqual(["jobs"]);
    expect((await readdir(join(home, "jobs"))).every((n) => n.endsWith(".json") && !n.startsWith("."))).toBe(true);
  });

  test("list: most recently updated first, damaged and foreign files skipped", async () => {
    await registerJob(home, entry("old", { updated_at: "2026-01-01T00:00:00.000Z" }));
    await registerJob(home, entry("new", { updated_at: "2026-03-01T00:00:00.000Z" }));
    await registerJob(home, entry("mid", { updated_at: "2026-02-01T00:00:00.000Z" }));
    await writeFile(join(home, "jobs", "broken.json"), "{not json");
    await writeFile(join(home, "jobs", "notes.txt"), "hello");
    expect((await listRegistered(home)).map((e) => e.job_id)).toEqual(["new", "mid", "old"]);
  });

  test("findJob names a damaged entry's file", async () => {
    await registerJob(home, entry("j1"));
    await writeFile(join(home, "jobs", "j1.json"), JSON.stringify({ job_id: "j1", state_backend: "redis" }));
    await expect(findJob(home, "j1")).rejects.toThrow(/j1\.json is damaged/);
  });

  test("list of a home that does not exist yet is empty", async () => {
    expect(await listRegistered(join(home, "missing"))).toEqual([]);
  });

  test("unregister removes only that job", async () => {
    await registerJob(home, entry("a"));
    await registerJob(home, entry("b"));
    expect(await unregisterJob(home, "a")).toBe(true);
    expect(await unregisterJob(home, "a")).toBe(false);
    expect(await findJob(home, "a")).toBeNull();
    expect((await listRegistered(home)).map((e) => e.job_id)).toEqual(["b"]);
  });

  test("a cached read sees every registration, change and removal, also while the folder looks settled", async () => {
    const cache = registryCache();
    const ids = async () => (await readRegistry(home, cache)).entries.map((e) => `${e.job_id}:${e.snapshot?.completed ?? "-"}`).sort();
    // The folder's mtime is set back each time, so the cache trusts it and must notice the next write by itself.
    const settle = () => utimes(join(home, "jobs"), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    await registerJob(home, entry("a"));
    await settle();
    expect(await ids()).toEqual(["a:-"]);
    await registerJob(home, entry("b"));
    expect(await ids()).toEqual(["a:-", "b:-"]);
    await settle();
    expect(await ids()).toEqual(["a:-", "b:-"]);
    await registerJob(home, entry("a", { snapshot: { status: "running", completed: 3, total: 9, cost_usd: 0 } }));
    expect(await ids()).toEqual(["a:3", "b:-"]);
    await settle();
    await unregisterJob(home, "b");
    expect(await ids()).toEqual(["a:3"]);
    await writeFile(join(home, "jobs", "bad.json"), "{");
    expect((await readRegistry(home, cache)).unreadable.map((u) => u.file)).toEqual([join(home, "jobs", "bad.json")]);
  });

  test("writes leave no temp files behind", async () => {
    for (let i = 0; i < 20; i++) await registerJob(home, entry("j1"));
    expect(await readdir(join(home, "jobs"))).toEqual(["j1.json"]);
  });
});
