// The wire side of the config stream: loads agent/proto/nodemesh.proto at run time and types
// its messages, shared by the controller's server and the agent's client.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { NodemeshError } from '../errors.js';
import type { Rejection } from '../state/model.js';
import type { ResourceKey, ViewResource } from './view-resource.js';

// tsc does not copy the .proto: from dist/agent/src/control/ the repository root is four
// levels up, where agent/proto/ sits (the image must ship it there too).
const PROTO_PATH = fileURLToPath(new URL('../../../../agent/proto/nodemesh.proto', import.meta.url));

/**
 * Field names in camelCase; uint64 versions as JS numbers (they start from a clock in ms,
 * far below 2^53); absent fields filled with their defaults (0, "", []).
 */
const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: true, arrays: true };

export interface ConfigRequest {
  node: string;
  version: number;
  rejections: Rejection[];
}

/** A node's whole view at a version: what the agent applies. */
export interface ConfigSnapshot {
  version: number;
  resources: ViewResource[];
}

/** The wire message: a whole view, or (incremental) the changes since baseVersion. */
export interface ConfigUpdate extends ConfigSnapshot {
  incremental: boolean;
  baseVersion: number;
  removed: ResourceKey[];
}

export interface CertificateRequest {
  csrPem: string;
  ttlSeconds: number;
}

export interface CertificateResponse {
  certChainPem: string;
  rootPem: string;
}

export interface MeshControlClient extends grpc.Client {
  streamConfig(metadata: grpc.Metadata): grpc.ClientDuplexStream<ConfigRequest, ConfigUpdate>;
  signCertificate(
    request: CertificateRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<CertificateResponse>,
  ): grpc.ClientUnaryCall;
}

export type MeshControlConstructor = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => MeshControlClient;

let loaded: { service: grpc.ServiceDefinition; Client: MeshControlConstructor } | undefined;

/** The MeshControl service; throws NM_ERR_CONTROL_PROTO when the .proto cannot be loaded. */
export function meshControl(): { service: grpc.ServiceDefinition; Client: MeshControlConstructor } {
  if (loaded) return loaded;
  let ctor: grpc.ServiceClientConstructor;
  try {
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS)) as {
      nodemesh: { v1: { MeshControl: grpc.ServiceClientConstructor } };
    };
    ctor = pkg.nodemesh.v1.MeshControl;
  } catch (err) {
    throw new NodemeshError(
      'NM_ERR_CONTROL_PROTO',
      `cannot load the control-plane API ${PROTO_PATH}: ${(err as Error).message}; agent/proto/ must be installed beside dist/`,
      { cause: err },
    );
  }
  loaded = { service: ctor.service, Client: ctor as unknown as MeshControlConstructor };
  return loaded;
}

/** Call metadata carrying the service-account token. */
export function bearerMetadata(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

/** The token of `authorization: Bearer <token>`, or undefined. */
export function bearerToken(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  const match = typeof value === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(value) : null;
  return match?.[1];
}

/** "PERMISSION_DENIED" for 7. */
export const statusName = (code: grpc.status): string => grpc.status[code] ?? `status ${code}`;
