/**
 * The backend registry: a new backend is one file plus one line here.
 *
 *   const backend = createBackend(job.backend, { jobDir, workspace, env: process.env });
 *   const result = await backend.execute(request, abortSignal);
 */
import type { BackendConfig, BackendConfigOf, BackendType } from "../config/schema.ts";
import { createAnthropicApiBackend } from "./anthropic-api.ts";
import { createAnthropicBatchBackend } from "./anthropic-batch.ts";
import { createClaudeCliBackend } from "./claude-cli.ts";
import { createCommandBackend } from "./command.ts";
import type { Backend, BackendContext } from "./types.ts";

export type BackendFactory<T extends BackendType = BackendType> = (config: BackendConfigOf<T>, ctx: BackendContext) => Backend;

const BACKENDS: { [T in BackendType]: BackendFactory<T> } = {
  claude_cli: createClaudeCliBackend,
  anthropic_api: createAnthropicApiBackend,
  anthropic_batch: createAnthropicBatchBackend,
  command: createCommandBackend,
};

export function createBackend(config: BackendConfig, ctx: BackendContext): Backend {
  return (BACKENDS[config.type] as BackendFactory)(config as never, ctx);
}
