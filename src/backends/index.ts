/**
 * The backend registry: a new backend is one file plus one line here.
 *
 *   const backend = createBackend(job.backend, { jobDir, workspace, env: process.env });
 *   const result = await backend.execute(request, abortSignal);
 */
import type { BackendConfig } from "../config/schema.ts";
import { createAnthropicApiBackend } from "./anthropic-api.ts";
import { createClaudeCliBackend } from "./claude-cli.ts";
import { createCommandBackend } from "./command.ts";
import type { Backend, BackendContext } from "./types.ts";

export type BackendFactory = (config: BackendConfig, ctx: BackendContext) => Backend;

const BACKENDS: Record<BackendConfig["type"], BackendFactory> = {
  claude_cli: createClaudeCliBackend,
  anthropic_api: createAnthropicApiBackend,
  command: createCommandBackend,
};

export function createBackend(config: BackendConfig, ctx: BackendContext): Backend {
  return BACKENDS[config.type](config, ctx);
}
