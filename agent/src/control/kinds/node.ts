// v1 Node: where each node's proxy listens, so the outbound side knows where to send HBONE.
import type { MeshNode } from '../../state/model.js';
import { isObj, readArray, readIPv4, readObject, show } from '../fields.js';
import type { KindValidator } from '../resource.js';

export const nodeKind: KindValidator<'nodes'> = {
  apiVersion: 'v1',
  kind: 'Node',
  collection: 'nodes',
  namespaced: false,
  nameFormat: 'dns1123-subdomain',
  validate(object, meta, errors): MeshNode | undefined {
    const status = readObject(object.status, 'status', errors) ?? {};
    const addresses = readArray(status.addresses, 'status.addresses', errors);
    const internal: Array<{ index: number; address: unknown }> = [];
    addresses.forEach((a, index) => {
      if (!isObj(a)) errors.add(`status.addresses[${index}]`, `must be a mapping with type and address, got ${show(a)}`);
      else if (a.type === 'InternalIP') internal.push({ index, address: a.address });
    });
    if (internal.length === 0) {
      errors.add('status.addresses', "must contain an address of type InternalIP (where this node's proxy listens)");
      return undefined;
    }
    // Dual-stack nodes list an IPv6 InternalIP too; the data path is IPv4, so take the IPv4 one.
    const ipv4 = internal.find((a) => typeof a.address === 'string' && !a.address.includes(':'));
    const chosen = ipv4 ?? internal[0]!;
    const internalIP = readIPv4(chosen.address, `status.addresses[${chosen.index}].address`, errors);
    return internalIP ? { name: meta.name, internalIP } : undefined;
  },
};
