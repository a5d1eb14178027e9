/**
 * A JSON document written as it is produced: the head's fields, then a long array a page at a
 * time, waiting for stdout to drain between pages. `status --json` of a million batches and
 * `run --dry-run --json` stay in bounded memory; the text is what JSON.stringify(value, null, 2)
 * would print.
 */
import { startJsonDocument, stdoutFlushed, writeStdout } from "./output.ts";

const PAGE = 500;

export async function writeJsonWithArray<T>(head: Record<string, unknown>, key: string, items: AsyncIterable<T> | Iterable<T>): Promise<void> {
  startJsonDocument();
  const headText = JSON.stringify(head, null, 2);
  const open = headText === "{}" ? "{\n" : `${headText.slice(0, -2)},\n`;
  let buf = `${open}  ${JSON.stringify(key)}: [`;
  let first = true;
  let count = 0;
  for await (const item of items as AsyncIterable<T>) {
    buf += `${first ? "\n" : ",\n"}${indent(JSON.stringify(item, null, 2), "    ")}`;
    first = false;
    if (++count % PAGE === 0) {
      writeStdout(buf);
      buf = "";
      await stdoutFlushed();
    }
  }
  buf += first ? "]\n}\n" : "\n  ]\n}\n";
  writeStdout(buf);
  await stdoutFlushed();
}

function indent(text: string, pad: string): string {
  return pad + text.replace(/\n/g, `\n${pad}`);
}
