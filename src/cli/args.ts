/** Flags every command accepts, wherever they appear on the command line. */
export const globalArgs = {
  verbose: { type: "boolean", alias: "v", description: "Show details: each attempt's command and output tail; stack traces on errors" },
  quiet: { type: "boolean", alias: "q", description: "Print only results and errors" },
  version: { type: "boolean", alias: "V", description: "Print the version and exit" },
  color: { type: "boolean", description: "Force colour on or off (--no-color); NO_COLOR is respected" },
} as const;

export const jsonArg = {
  json: { type: "boolean", alias: "j", description: "Write one JSON document to stdout (human messages go to stderr)" },
} as const;
