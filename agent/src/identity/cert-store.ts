// The agent's certificate cache on disk: each identity's key, chain and root, so that an agent
// restarted while the control plane is down still proves its workloads' identities with the
// certificates that remain valid. Files are 0600 and written atomically.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';

export interface StoredCertificate {
  identity: string;
  /** PKCS#8 PEM. */
  key: string;
  certChainPem: string;
  rootPem: string;
}

export class CertStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  save(cert: StoredCertificate): void {
    const file = this.#file(cert.identity);
    writeFileSync(`${file}.tmp`, JSON.stringify(cert), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  /** The stored certificate of `identity`, if a readable one exists; validity is the caller's check. */
  load(identity: string): StoredCertificate | undefined {
    try {
      const stored = JSON.parse(readFileSync(this.#file(identity), 'utf8')) as StoredCertificate;
      return stored.identity === identity && typeof stored.key === 'string' ? stored : undefined;
    } catch {
      return undefined;
    }
  }

  remove(identity: string): void {
    rmSync(this.#file(identity), { force: true });
  }

  /** SPIFFE URIs contain slashes: the file name is a digest of the identity. */
  #file(identity: string): string {
    return path.join(this.dir, `${createHash('sha256').update(identity).digest('hex').slice(0, 32)}.json`);
  }
}
