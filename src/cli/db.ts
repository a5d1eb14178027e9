/**
 * `mozart db migrate` and `mozart db status`: the Postgres schema of the shared state. Every
 * writing command migrates on its own when it first connects; `db migrate` does it up front
 * (a deploy step, or with a more privileged role than the workers'). Safe to run from many
 * machines at once: migrations run under an advisory lock, each in one transaction.
 */
import { defineCommand } from "citty";
import { EXIT, MozartError } from "../errors.ts";
import { DATABASE_URL_ENV } from "../state/database.ts";
import { database } from "../state/drivers/postgres.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput } from "./output.ts";

export default defineCommand({
  meta: { name: "db", description: "Create or migrate the Postgres schema of the shared state (migrate), or show its version (status)" },
  args: {
    action: { type: "positional", required: true, description: "migrate or status" },
    "url-env": { type: "string", description: `The variable holding the database URL (default ${DATABASE_URL_ENV})`, valueHint: "NAME" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    if (args.action !== "migrate" && args.action !== "status") throw new MozartError(`unknown action "${args.action}"`, { exitCode: EXIT.usage, hint: "mozart db migrate, or mozart db status" });
    const urlEnv = args["url-env"] ?? DATABASE_URL_ENV;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(urlEnv)) throw new MozartError(`--url-env expects a variable name, got "${urlEnv}"`, { exitCode: EXIT.usage });
    const db = await database(`$${urlEnv}`, process.env);
    if (args.action === "status") {
      const s = await db.status();
      if (out.json) out.emit(s);
      else {
        out.print(`database: ${s.location}`);
        out.print(s.version === null ? "schema:   none yet (mozart db migrate creates it)" : `schema:   version ${s.version} (this Mozart knows ${s.known})`);
        for (const a of s.applied) out.print(out.c.dim(`  ${a.version}  ${a.applied_at}  ${a.name}`));
        for (const p of s.pending) out.print(`  pending: ${p.version}  ${p.name}`);
      }
      return s.version !== null && s.version > s.known ? EXIT.failed : EXIT.ok;
    }
    const r = await db.migrate();
    if (out.json) out.emit(r);
    else out.print(r.applied_now.length ? `migrated ${r.location} to schema version ${r.version} (applied ${r.applied_now.join(", ")})` : `${r.location} is up to date (schema version ${r.version})`);
    return EXIT.ok;
  },
});
