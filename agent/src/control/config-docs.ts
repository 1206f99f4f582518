// Turns the text of a multi-document YAML configuration into plain objects, each tagged with
// where it came from. A syntax error anywhere refuses the whole file: a half-read file could
// silently drop resources. Documents are composed and converted one at a time: a syntax tree
// of the whole file at once (yaml's parseAllDocuments) is tens of MiB for a 5,000-pod file,
// lives long enough to reach V8's old space, and made every reload grow the heap.
import { Composer, LineCounter, Parser } from 'yaml';
import { NodemeshError } from '../errors.js';

export interface ConfigDocument {
  /** e.g. "mesh.yaml document 3, line 40": names the document in messages before its name is known. */
  origin: string;
  /** The document as plain data (mappings, lists, scalars); never null or undefined. */
  value: unknown;
}

/** Throws NodemeshError NM_ERR_CONFIG_YAML naming the file, line and column of the first error. */
export function parseConfig(text: string, sourceName: string): ConfigDocument[] {
  const lineCounter = new LineCounter();
  const docs = new Composer().compose(new Parser(lineCounter.addNewLine).parse(text));
  const out: ConfigDocument[] = [];
  let i = 0;
  for (const doc of docs) {
    i++;
    const error = doc.errors[0];
    if (error) {
      const pos = error.linePos?.[0] ?? lineCounter.linePos(error.pos[0]);
      // The first line of yaml's message is its summary.
      const summary = error.message.split('\n')[0]!;
      throw new NodemeshError(
        'NM_ERR_CONFIG_YAML',
        `${sourceName}:${pos.line}:${pos.col}: invalid YAML: ${summary}; the file was not applied`,
        { cause: error },
      );
    }
    let value: unknown;
    try {
      value = doc.toJS();
    } catch (err) {
      // Raised by toJS for alias bombs (more aliases than yaml's maxAliasCount).
      const line = lineCounter.linePos(doc.range[0]).line;
      throw new NodemeshError(
        'NM_ERR_CONFIG_YAML',
        `${sourceName}:${line}: invalid YAML in document ${i}: ${(err as Error).message}; the file was not applied`,
        { cause: err },
      );
    }
    if (value === null || value === undefined) continue;
    const line = lineCounter.linePos(doc.contents?.range[0] ?? doc.range[0]).line;
    out.push({ origin: `${sourceName} document ${i}, line ${line}`, value });
  }
  return out;
}
