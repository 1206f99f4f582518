import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NodemeshError } from '../errors.js';
import { parseConfig } from './config-docs.js';

describe('parseConfig', () => {
  it('refuses the whole file on a YAML syntax error, naming the file, line and column', () => {
    const text = 'apiVersion: v1\nkind: Namespace\nmetadata: { name: a }\n---\napiVersion: v1\nkind: Pod\nmetadata: [name: b\nspec: {}\n';
    assert.throws(
      () => parseConfig(text, '/etc/nodemesh/mesh.yaml'),
      (err: unknown) =>
        err instanceof NodemeshError &&
        err.code === 'NM_ERR_CONFIG_YAML' &&
        /^\/etc\/nodemesh\/mesh\.yaml:8:1: invalid YAML: .+; the file was not applied$/.test(err.message),
    );
  });

  it('refuses duplicate keys in a mapping, which would silently drop a value', () => {
    assert.throws(() => parseConfig('kind: Pod\nkind: Service\n', 'mesh.yaml'), /mesh\.yaml:2:1: invalid YAML: Map keys must be unique/);
  });

  it('ignores empty and comment-only documents and tells each document where it starts', () => {
    const docs = parseConfig('---\n# nothing here\n---\n\n---\napiVersion: v1\nkind: Namespace\n---\n', 'mesh.yaml');
    assert.deepEqual(docs, [{ origin: 'mesh.yaml document 3, line 6', value: { apiVersion: 'v1', kind: 'Namespace' } }]);
  });
});
