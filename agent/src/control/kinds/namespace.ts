// v1 Namespace: its label nodemesh.io/mode=enabled enrolls the namespace's pods in the mesh.
import { ENROLL_LABEL, ENROLL_VALUE, type MeshNamespace } from '../../state/model.js';
import type { KindValidator } from '../resource.js';

export const namespaceKind: KindValidator<'namespaces'> = {
  apiVersion: 'v1',
  kind: 'Namespace',
  collection: 'namespaces',
  namespaced: false,
  nameFormat: 'dns1123-label',
  validate(_object, meta): MeshNamespace {
    return { name: meta.name, labels: meta.labels, enrolled: meta.labels[ENROLL_LABEL] === ENROLL_VALUE };
  },
};
