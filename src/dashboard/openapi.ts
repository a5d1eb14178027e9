/**
 * The OpenAPI 3.1 document, generated from the dashboard's route table: each route's path,
 * parameters, body and responses come from the same zod schemas that validate its input, so
 * the document cannot drift from the code. Named schemas (`.meta({ id })`) become components.
 */
import { z } from "zod";
import { ErrorBody } from "./schemas.ts";

export interface RouteSpec {
  method: "GET" | "POST";
  /** h3 form: `/api/jobs/:id`. */
  path: string;
  summary: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** Set for server-sent event streams: what the stream carries. */
  sse?: string;
  responses: Record<number, { description: string; schema?: z.ZodType }>;
}

type JsonSchema = Record<string, unknown>;

const ERRORS: Record<number, string> = {
  400: "Bad input: a malformed id, parameter or body",
  401: "A token is needed (the server was started with --token)",
  403: "A cross-site request to a control route, or a Host this server does not answer",
  404: "No such job, batch or route",
};

export function openApiDocument(routes: RouteSpec[], version: string): JsonSchema {
  const components: Record<string, JsonSchema> = {};
  const toSchema = (schema: z.ZodType, io: "input" | "output"): JsonSchema => {
    const generated = JSON.stringify(z.toJSONSchema(schema, { io, unrepresentable: "any" }));
    // Named schemas land in $defs; in OpenAPI they are components.
    const doc = JSON.parse(generated.replaceAll('"#/$defs/', '"#/components/schemas/')) as JsonSchema & { $defs?: Record<string, JsonSchema> };
    const { $schema: _s, $defs, ...rest } = doc;
    for (const [id, def] of Object.entries($defs ?? {})) components[id] = def;
    return rest;
  };
  // Registers the Error component (a named schema converts to a $ref plus its definition).
  toSchema(ErrorBody, "output");
  const errorRef = { $ref: "#/components/schemas/Error" };

  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.path.replace(/:([a-z]+)/g, "{$1}");
    const parameters: unknown[] = [];
    for (const [where, obj] of [["path", r.params], ["query", r.query]] as const) {
      if (!obj) continue;
      for (const [name, field] of Object.entries(obj.shape)) {
        const schema = toSchema(field as z.ZodType, "input");
        const required = where === "path" || !(field as z.ZodType).safeParse(undefined).success;
        parameters.push({ name, in: where, required, schema, ...(schema.description ? { description: schema.description } : {}) });
      }
    }
    if (r.sse) parameters.push({ name: "Last-Event-ID", in: "header", required: false, description: "Resume after this seq (sent by EventSource on reconnect)", schema: { type: "string" } });
    const responses: Record<string, unknown> = {};
    for (const [status, res] of Object.entries(r.responses)) {
      const content = r.sse && status === "200"
        ? { "text/event-stream": { schema: { type: "string", description: r.sse } } }
        : res.schema
          ? { "application/json": { schema: toSchema(res.schema, "output") } }
          : { "application/json": { schema: errorRef } };
      responses[status] = { description: res.description, content };
    }
    const errorStatuses = [...(r.params || r.query || r.body ? [400] : []), 401, ...(r.method === "POST" ? [403] : []), ...(r.params ? [404] : [])];
    for (const status of errorStatuses) responses[status] ??= { description: ERRORS[status], content: { "application/json": { schema: errorRef } } };
    const op: Record<string, unknown> = {
      operationId: `${r.method.toLowerCase()}${path.replace(/[{}]/g, "").replace(/\/([a-z])/g, (_, c: string) => c.toUpperCase()).replace(/[^A-Za-z]/g, "")}`,
      summary: r.summary,
      ...(parameters.length ? { parameters } : {}),
      ...(r.body ? { requestBody: { required: false, content: { "application/json": { schema: toSchema(r.body, "input") } } } } : {}),
      responses,
      ...(r.path === "/health" ? { security: [] } : {}),
    };
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: "3.1.0",
    info: { title: "Mozart dashboard API", version, description: "Watch and steer the jobs registered on this machine. Errors are `{ \"error\": { \"code\", \"message\" } }`." },
    servers: [{ url: "/" }],
    paths,
    components: {
      schemas: components,
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "Needed when the server was started with --token" }, session: { type: "apiKey", in: "cookie", name: "mozart_session" } },
    },
    security: [{}, { bearer: [] }, { session: [] }],
  };
}
