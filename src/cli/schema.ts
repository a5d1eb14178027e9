import { defineCommand } from "citty";
import { jobJsonSchema } from "../config/schema.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { writeStdout } from "./output.ts";

export default defineCommand({
  meta: {
    name: "schema",
    description: "Print the JSON Schema of job files (for editor completion: # yaml-language-server: $schema=<file>)",
  },
  // --json is accepted like everywhere else; the schema is one JSON document either way.
  args: { ...jsonArg, ...globalArgs },
  run() {
    writeStdout(`${JSON.stringify(jobJsonSchema(), null, 2)}\n`);
  },
});
